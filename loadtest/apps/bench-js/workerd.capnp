# The same app for workerd on its own (`workerd serve`), without wrangler's
# node processes and proxies around it, so that a process tree measured is
# the runtime's alone. loadtest/js-bench.sh sets the listen address with
# --socket-addr http=HOST:PORT and the data dir with
# --directory-path do-storage=DIR; the values below are for a run by hand.
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "main", worker = .bench),
    (name = "do-storage", disk = (path = "/tmp/torpor-bench-js-workerd", writable = true)),
  ],
  sockets = [
    (name = "http", address = "127.0.0.1:8788", http = (), service = "main"),
  ],
);

const bench :Workerd.Worker = (
  modules = [
    (name = "index.js", esModule = embed "src/index.js"),
  ],
  # As wrangler.toml's compatibility_date, so both runtimes see one app.
  compatibilityDate = "2025-01-01",
  bindings = [
    (name = "BENCH", durableObjectNamespace = "Bench"),
  ],
  durableObjectNamespaces = [
    # enableSql: the class is a new_sqlite_classes one in wrangler.toml.
    (className = "Bench", uniqueKey = "torpor-bench-js-Bench", enableSql = true),
  ],
  durableObjectStorage = (localDisk = "do-storage"),
);
