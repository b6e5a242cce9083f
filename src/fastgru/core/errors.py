"""The error type fastgru raises for bad input, so callers can catch it precisely."""


class GRUInputError(ValueError):
    """Bad argument to a fastgru GRU (shape, dtype, device, lengths, non-finite values).

    A ValueError subclass; the message always names the offending argument.
    """
