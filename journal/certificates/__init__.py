"""The certificate register (книга учёта и выдачи аттестатов): certificates and their duplicates
as signed records in the school ledger log, and the grades a certificate carries."""
