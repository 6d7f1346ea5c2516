//! `rendezvous sim --calibrate`: the cost model measured on the real handlers (DESIGN.md §10).
