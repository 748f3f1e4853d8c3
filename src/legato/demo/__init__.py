"""``legato demo``: the travel booking in process (``run``: each trip the saga of
``trip``, or with ``--workflow`` the workflow of ``trip_workflow``, its approvals sent by
``approver``; ``booking`` is either way) and over HTTP (``http``), the choreographed
shop over a broker (``shop``), and the bank ledgers of the XA crash tests and benchmark
(``bank``). ``command`` is the command's arguments and picks the demo.

The travel demos plan their trips and faults from the seed (``workload``, ``faults``),
read the verdict from the services' own databases (``check``), and share how they
report it (``report``) and the directory a run leaves (``directory``).

The demos are written as a user of Legato would write them: on the names ``legato``
exports and its public modules (``legato.participant``, ``legato.brokers``,
``legato.flow``, ``legato.log``, ``legato.observe``), imported by their full name.
``examples/`` and ``bench/`` build on these modules.
"""
