"""OPT in numpy: dense and sparse FFN forward, checkpoint loading, low-rank predictors."""
