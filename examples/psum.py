"""psum(a): the sum of a distributed array, the seed's mpi4py example.

Start a cluster in this directory (`mpx cluster start -n 4`), then
`mpx px 'from psum import psum'` imports it on every engine.
"""
from mpi4py import MPI
import numpy as np


def psum(a):
    """Sum of the elements of a distributed array: local sum, then Allreduce(SUM)."""
    locsum = np.sum(a)
    rcvBuf = np.array(0.0, 'd')
    MPI.COMM_WORLD.Allreduce([locsum, MPI.DOUBLE], [rcvBuf, MPI.DOUBLE], op=MPI.SUM)
    return rcvBuf
