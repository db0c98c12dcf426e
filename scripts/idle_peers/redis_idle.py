"""Redis' own view of a run: CPU seconds (INFO cpu) and commands (INFO commandstats)."""


def cpu(r):
    info = r.info("cpu")
    return info["used_cpu_user"] + info["used_cpu_sys"]


def commands(r):
    return sum(v["calls"] for v in r.info("commandstats").values())
