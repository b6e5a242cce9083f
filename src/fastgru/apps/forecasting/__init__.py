"""Forecasting pieces behind `fastgru forecast`: baselines and metrics, the seasonal-residual GRU, the
windows it reads, and the classical MSTL + ETS peer."""
