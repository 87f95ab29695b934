// Server: banger's DNS responder on UDP port 53 of every banger bridge
// address, answering from a snapshot of the leases that it refreshes from
// the state database every second (so a sandbox is resolvable about a second
// after it gets its lease, and a new network's bridge address is bound about
// a second after it is recorded).
//
// One thread does everything: it enters the configured network namespace
// (setns on that thread only: the rest of the process stays where it is),
// then creates, binds and serves the sockets, which belong to that namespace
// for good. Sockets are bound with IP_FREEBIND, so an address that is
// recorded but not (yet, or no longer) on its bridge can still be bound and
// starts answering as soon as the bridge has it. UDP only: every answer fits
// in 512 bytes, so truncation (and a TCP retry) never happens.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "dns/responder.h"
#include "state/state_store.h"

namespace banger::dns {

/// What the server answers from: the addresses to listen on (the bridges')
/// and the names to answer.
struct Snapshot {
  std::vector<std::string> addresses;
  NameTable names;
};
using SnapshotSource = std::function<Result<Snapshot>()>;

/// Snapshots from the state database: every network's gateway and every
/// lease. `store` must outlive the source.
SnapshotSource StateSnapshots(StateStore& store);

struct ServerOptions {
  /// A named network namespace (`ip netns`, as BANGER_NETNS selects) to serve
  /// in; "" = the namespace the process is in.
  std::string netns;
  std::filesystem::path netns_dir = "/run/netns";
  /// 0 picks a free port per address (tests on loopback).
  uint16_t port = 53;
  std::chrono::milliseconds refresh{1000};
  uint32_t ttl = 5;  // seconds, answers and negative answers alike
};

/// Counters, for tests and logs.
struct ServerStats {
  uint64_t queries = 0;    // packets received
  uint64_t answered = 0;   // responses sent
  uint64_t refreshes = 0;  // snapshots taken successfully
};

class Server {
 public:
  /// Starts the server thread, enters the namespace, takes the first
  /// snapshot and binds its addresses, then returns. Errors: a namespace
  /// that does not exist or cannot be entered, a first snapshot that fails,
  /// a port that needs privileges the process lacks. An address that is busy
  /// (another DNS server) is logged and retried at every refresh.
  static Result<std::unique_ptr<Server>> Start(SnapshotSource source, ServerOptions options);

  /// Stops the thread and closes the sockets.
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  /// "ADDRESS:PORT" of each socket bound now, sorted.
  std::vector<std::string> Bound() const;
  ServerStats Stats() const;

 private:
  struct State;
  Server() = default;
  std::unique_ptr<State> state_;
};

}  // namespace banger::dns
