"""`flashsim advise`: the layout, window, merge gap and queue depth to use under a DRAM budget."""
