"""The run dir, and the only code that reads or writes one: `store` (rows, samples, env.json, suite.toml, reports,
traces), `csvfile` (the append-only CSVs), `resume` (opening a dir for a sweep: the lock and the resume rules),
`lock` (one writer at a time), `rows` (a Measurement as a results row)."""
