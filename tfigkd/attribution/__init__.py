"""Integrated Gradients and the precomputed store of the teacher's IG maps."""

from tfigkd.attribution.integrated_gradients import (BASELINES, METHODS, IntegratedGradients,
                                                     ig_map, integrated_gradients,
                                                     make_baseline, quadrature)

__all__ = ["BASELINES", "METHODS", "IntegratedGradients", "ig_map",
           "integrated_gradients", "make_baseline", "quadrature"]
