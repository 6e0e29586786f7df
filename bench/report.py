def write(results, out):  # placeholder until the report lands
    pass
