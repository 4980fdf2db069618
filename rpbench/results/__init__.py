"""The run dir: `store` is the only code that reads or writes one (results.csv, samples.csv, env.json, suite.toml,
report.html, traces/)."""
