def noop(i):
    return i
