"""Reading finished runs side by side: `bench compare` (metrics, rules, statistics, the
verdict, tables) and `bench report`. Reads only :mod:`bench.results`: comparing results
never loads the run stack or Kafka."""
