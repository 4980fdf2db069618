"""The data every room shares: what a case is, how it is timed, what a measurement holds, the row columns and the
error convention, and the package version. Plain Python and numpy: nothing here imports torch or any other part of rpbench."""

__version__ = "0.1.0"
