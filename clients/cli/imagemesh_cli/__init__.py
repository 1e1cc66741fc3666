"""imagemesh's command line client: talks to the public HTTP API only."""
