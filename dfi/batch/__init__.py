"""Scale-out: many rows of one command on a Dask cluster, and the builder of the shared
feature store. Owns the manifest (rows to run), the ledger (rows done, with a hash of their
settings), the cluster (local or ``--scheduler``), the per-worker cache and the row runner.
May import core, nets, face, edit, style, video; must never be imported by them (only the
command line imports it). What a row does is a function the command line passes in
(``dfi/cli/batch.py``).
"""
