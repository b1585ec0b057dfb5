"""Report: the CSVs and the dashboard (:mod:`.report` reads and writes, :mod:`.dashboard` renders
the records of :mod:`.data`, :mod:`.privacy` hides IP addresses)."""
