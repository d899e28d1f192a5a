"""The school year's lifecycle: terms and their closing, the assessment plan, term and year
grades (computed, confirmed, sealed) and the grading rules in force."""
