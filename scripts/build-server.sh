#!/usr/bin/env bash
# Gets the lab's binaries without the rest of setup: the official SurrealDB 3.3.5 server
# (get-server.sh: SURREAL_BIN, PATH, the official archive, else the source build), and the storage
# node and the `lab` CLI (release build, cached outside the clone).
exec "$(dirname "${BASH_SOURCE[0]}")/get-server.sh" --with-lab-binaries
