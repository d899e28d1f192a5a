"""Transfers between schools: the signed extract of a leaving pupil's СОР/СОЧ (БЖБ/ТЖБ) results
and term grades, and carrying it in at the receiving school."""
