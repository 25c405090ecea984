"""Training stages and the pipeline that chains them."""
