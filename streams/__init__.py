"""The imperative shell: the command line, the file replay, and the Faust stream worker."""
