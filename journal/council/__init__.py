"""The end of a pupil's year after the grades are sealed: the pedagogical council's decisions
(promoted, retained, ...) and the exam and final grades of graduating classes, as records signed
by the school in its ledger log (kept 25 years with the summary ledger)."""
