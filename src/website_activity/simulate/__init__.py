"""The simulator: the seeded traffic model (users, site map, sessions, faults) the producers send."""
