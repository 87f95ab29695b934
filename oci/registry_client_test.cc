// The stall bound of RegistryClient with a simulated clock: a registry that
// sends nothing (or a few bytes, then nothing) on every attempt makes a
// transfer fail within the stall budget; the defaults keep that under two
// minutes in total, retries included.
#include "oci/registry_client.h"

#include <gtest/gtest.h>

#include "base/files.h"
#include "base/sha256.h"

namespace banger::oci {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

class SimClock final : public Clock {
 public:
  std::chrono::system_clock::time_point Now() const override { return std::chrono::system_clock::time_point{} + elapsed_; }
  std::chrono::steady_clock::time_point SteadyNow() const override {
    return std::chrono::steady_clock::time_point{} + seconds(1000) + elapsed_;
  }
  void SleepFor(milliseconds d) override { elapsed_ += d; }
  void Advance(milliseconds d) { elapsed_ += d; }
  milliseconds elapsed() const { return elapsed_; }

 private:
  milliseconds elapsed_{0};
};

enum class Registry {
  kSilent,         // connects as slowly as allowed, then no byte until the low-speed abort
  kDribbleStall,   // connects slowly, sends a few bytes, then stalls
  kMoving,         // 1 KiB every 10 s (simulated), never silent for the window
};

// Plays a registry against the client's per-attempt timeouts. libcurl's lag
// in noticing a stall (kCurlStallLag) is simulated too.
class SimHttp final : public HttpClient {
 public:
  SimHttp(SimClock& clock, Registry mode, std::string blob) : clock_(clock), mode_(mode), blob_(std::move(blob)) {}

  Result<HttpResponse> Do(const HttpRequest& req, const BodySink& sink) override {
    ++attempts_;
    connect_timeouts_.push_back(req.connect_timeout);
    stall_timeouts_.push_back(req.stall_timeout);
    if (mode_ == Registry::kMoving) {
      clock_.Advance(milliseconds(50));
      HttpResponse resp;
      resp.status = req.range_start > 0 ? 206 : 200;
      if (req.range_start > 0) {
        resp.headers["content-range"] = "bytes " + std::to_string(req.range_start) + "-";
      }
      if (req.on_response) BANGER_RETURN_IF_ERROR(req.on_response(resp.status, resp.headers));
      for (size_t off = req.range_start; off < blob_.size(); off += 1024) {
        clock_.Advance(seconds(10));
        BANGER_RETURN_IF_ERROR(sink(std::string_view(blob_).substr(off, 1024)));
      }
      return resp;
    }
    clock_.Advance(req.connect_timeout - milliseconds(1));  // just under the connect timeout
    if (mode_ == Registry::kDribbleStall) {
      HttpResponse resp;
      resp.status = 200;
      if (req.on_response) BANGER_RETURN_IF_ERROR(req.on_response(200, resp.headers));
      BANGER_RETURN_IF_ERROR(sink("xx"));
    }
    clock_.Advance(req.stall_timeout + kCurlStallLag - milliseconds(1));
    return DeadlineExceeded("GET " + req.url + ": no data for " + std::to_string(req.stall_timeout.count()) + " s");
  }

  int attempts_ = 0;
  std::vector<seconds> connect_timeouts_, stall_timeouts_;

 private:
  SimClock& clock_;
  Registry mode_;
  std::string blob_;
};

class StallTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = MakeTempDir("banger-stall-test");
    ASSERT_TRUE(dir.ok());
    dir_ = *dir;
    store_ = BlobStore(dir_ / "blobs");
    ASSERT_TRUE(store_.Init().ok());
    blob_ = std::string(64 * 1024, 'b');
    desc_.digest = "sha256:" + Sha256Hex(blob_);
    desc_.size = static_cast<int64_t>(blob_.size());
  }
  void TearDown() override { (void)RemoveAll(dir_); }

  Result<uint64_t> Fetch(Registry mode, RegistryClientOptions o, SimClock& clock, SimHttp** http_out = nullptr) {
    auto ref = ParseReference("registry.invalid/app:1");
    EXPECT_TRUE(ref.ok());
    http_ = std::make_unique<SimHttp>(clock, mode, blob_);
    if (http_out) *http_out = http_.get();
    o.clock = &clock;
    RegistryClient client(*http_, *ref, o);
    return client.FetchBlob(desc_, store_);
  }

  std::filesystem::path dir_;
  BlobStore store_{std::filesystem::path("/nonexistent")};
  std::string blob_;
  Descriptor desc_;
  std::unique_ptr<SimHttp> http_;
};

TEST_F(StallTest, DefaultsBoundAStalledTransferUnderTwoMinutes) {
  RegistryClientOptions defaults;
  EXPECT_EQ(defaults.retry.max_attempts, 5);
  EXPECT_EQ(defaults.stall.budget, seconds(90));
  EXPECT_EQ(defaults.stall.PerAttempt(), seconds(20));
  EXPECT_LT(WorstCaseStalledTransfer(defaults.retry, defaults.stall), seconds(120));

  for (Registry mode : {Registry::kSilent, Registry::kDribbleStall}) {
    SimClock clock;
    SimHttp* http = nullptr;
    auto r = Fetch(mode, defaults, clock, &http);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code(), StatusCode::kDeadlineExceeded);
    const std::string& m = r.error().message();
    EXPECT_NE(m.find("registry stalled: no data for"), std::string::npos) << m;
    EXPECT_NE(m.find(desc_.digest), std::string::npos) << m;
    EXPECT_NE(m.find("registry.invalid"), std::string::npos) << m;
    EXPECT_NE(m.find(std::to_string(http->attempts_) + " attempt"), std::string::npos) << m;
    // The whole transfer, retries and backoffs included, under 2 minutes
    // (before: 5 x 60 s + backoffs, about 5 minutes).
    EXPECT_LE(clock.elapsed(), WorstCaseStalledTransfer(defaults.retry, defaults.stall)) << m;
    EXPECT_LT(clock.elapsed(), seconds(120)) << m;
    EXPECT_GE(clock.elapsed(), seconds(85)) << "gave up before the budget: " << m;
    // No attempt was given more silence than the budget had left.
    for (size_t i = 0; i < http->stall_timeouts_.size(); ++i) {
      EXPECT_LE(http->connect_timeouts_[i] + http->stall_timeouts_[i], seconds(90)) << i;
    }
  }
}

TEST_F(StallTest, ASlowButMovingTransferIsNotAStall) {
  SimClock clock;
  auto r = Fetch(Registry::kMoving, RegistryClientOptions{}, clock);
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(*r, blob_.size());
  // 64 pieces, 10 s apart: over ten minutes, far past the stall budget.
  EXPECT_GT(clock.elapsed(), seconds(600));
}

TEST_F(StallTest, ASmallBudgetScalesThePerAttemptWindow) {
  StallPolicy p;
  p.budget = seconds(4);
  EXPECT_EQ(p.PerAttempt(), seconds(1));
  p.budget = seconds(1);
  EXPECT_EQ(p.PerAttempt(), seconds(1));
  p.budget = seconds(3600);
  EXPECT_EQ(p.PerAttempt(), seconds(20));
}

}  // namespace
}  // namespace banger::oci
