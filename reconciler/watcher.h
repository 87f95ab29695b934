// Watcher: the long-running reconciler behind `banger watch`. It keeps the
// host converged to a SpecSource (spec paths or a git repository):
//
//   - level-triggered: an event (a saved file, a timer) only schedules a pass;
//     every pass re-reads the source and observes the host (Engine::Refresh);
//   - each sandbox that needs work is a key in a WorkQueue, converged by a
//     worker with Engine::Converge under the sandbox's lock, so a slow pull or
//     boot of one sandbox delays neither the others nor the next fetch, and a
//     new revision that changes a sandbox still booting is applied after that
//     boot ends, never by a second concurrent boot;
//   - a bad revision (a spec that fails to parse or validate) changes
//     nothing: the previous good desired state stays in force and the error
//     is recorded with the revision and file:line:col;
//   - recovery follows restartPolicy with per-sandbox backoff; sandboxes
//     another process is working on are retried shortly after.
//
// The source's progress is recorded in the state database (sources table)
// for `banger status`.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "reconciler/engine.h"
#include "reconciler/spec_source.h"
#include "reconciler/work_queue.h"
#include "state/state_store.h"

namespace banger {

struct WatchOptions {
  /// Apply set of the source's sandboxes; empty: source.Key().
  std::string owner;
  /// Delete this set's sandboxes that the source no longer declares.
  bool prune = false;
  /// Full resync (fetch, observe, converge) at least this often.
  std::chrono::milliseconds interval{std::chrono::seconds(30)};
  /// Change notifications are acted on once the source has been quiet this long.
  std::chrono::milliseconds debounce{std::chrono::milliseconds(300)};
  /// Sandboxes converged at once.
  int workers = 4;
  /// A sandbox held by another process is looked at again after this.
  std::chrono::milliseconds busy_retry{std::chrono::seconds(2)};
};

/// Counters for `banger watch --listen` (/metrics).
struct WatchMetrics {
  int64_t passes = 0;
  double last_pass_seconds = 0;
  std::map<std::string, int64_t> applies;    // by action ("create", "restart", ...), succeeded
  std::map<std::string, int64_t> failures;   // by action, failed
  int64_t last_success_unix = 0;             // last pass that found everything converged
  int64_t last_pass_unix = 0;
};

/// Prometheus text exposition of `m` for source `source_key`, with the
/// number of sandboxes in each phase (all sandboxes of the state directory).
std::string RenderWatchMetrics(const WatchMetrics& m, const std::string& source_key,
                               const std::map<std::string, int>& sandboxes_by_phase);

/// What one complete pass (RunOnce) found.
struct PassResult {
  bool converged = false;       // source read, specs valid, every change applied, all Ready
  std::string revision;         // revision seen ("" if the fetch failed)
  std::vector<std::string> problems;  // why not converged, one line each
};

class Watcher {
 public:
  /// `engine` is used from several threads (Refresh from the loop, Converge
  /// from workers); Engine is safe for that.
  Watcher(StateStore& store, Engine& engine, SpecSource& source, Clock& clock, WatchOptions options);
  ~Watcher();
  Watcher(const Watcher&) = delete;
  Watcher& operator=(const Watcher&) = delete;

  /// One complete pass (fetch, observe, plan, converge every sandbox once,
  /// restarting per policy), then returns: for `banger watch --once`.
  PassResult RunOnce();

  /// Runs passes until Stop(): on every change notification (debounced),
  /// every `interval`, and converges queued sandboxes meanwhile. Returns once
  /// stopped; work still in progress after `grace` is left running (the
  /// caller exits the process; the next run converges what it left).
  /// Returns true if every worker finished within the grace period.
  bool Run(std::chrono::milliseconds grace = std::chrono::seconds(4));

  /// Asks Run to return (thread-safe; not async-signal-safe).
  void Stop();
  /// Something in the source may have changed (thread-safe).
  void Trigger();

  /// Passes completed so far (for tests and metrics).
  int passes() const { return passes_.load(); }
  /// A copy of the counters (thread-safe).
  WatchMetrics Metrics();

 private:
  struct Desired {
    SpecDocument doc;
    std::string json;
    std::string hash;
  };
  // One pass: fetch, record, observe, enqueue what needs work.
  void Pass();
  void Worker();
  void ConvergeKey(const std::string& key);
  void RecordSource(const std::function<void(SourceRecord&)>& edit);
  void FinishKey(const std::string& key, const std::string& error);
  std::map<std::string, Desired> DesiredFromRecords();

  StateStore& store_;
  Engine& engine_;
  SpecSource& source_;
  Clock& clock_;
  WatchOptions options_;
  std::string owner_;
  WorkQueue queue_;

  std::mutex mu_;                             // guards everything below
  std::condition_variable cv_;
  std::map<std::string, Desired> desired_;    // by sandbox name
  std::vector<NetworkDocument> desired_networks_;  // `kind: Network` documents of that revision
  bool have_good_ = false;                    // desired_ comes from a valid revision
  bool prune_now_ = false;                    // the last pass read a valid revision
  std::string good_revision_, good_summary_;  // revision desired_ comes from
  std::set<std::string> outstanding_;         // keys of good_revision_ not yet converged
  std::map<std::string, std::string> key_errors_;  // sandbox -> why it is not converged
  std::vector<std::string> conflicts_;        // last pass: specs owned by another set
  std::string pass_problem_;                  // last pass: fetch error or invalid specs
  std::mutex record_mu_;                      // serialises read-modify-write of the source row
  bool change_pending_ = false;
  std::chrono::steady_clock::time_point change_at_{};
  bool stop_ = false;

  std::atomic<int> passes_{0};
  std::mutex metrics_mu_;
  WatchMetrics metrics_;
  std::atomic<int> busy_workers_{0};
};

}  // namespace banger
