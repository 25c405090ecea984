"""Hyperparameter search on the validation split (``tfigkd tune``): search spaces and Optuna glue."""
