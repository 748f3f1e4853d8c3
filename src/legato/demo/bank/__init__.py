"""Money moving between bank ledgers in PostgreSQL and MariaDB, over HTTP: the ledger
service (``service``) and the initiators of a transfer (``transfer``), as XA or as a
saga, for the XA crash tests and ``bench/xa_transfer.py``."""
