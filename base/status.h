// Status and Result<T>: banger's error values. Inside banger, functions return
// these instead of throwing; exceptions from third-party libraries are caught
// at adapter edges (spec/, state/, oci/) and converted.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace banger {

/// Codes are chosen for reconciler decisions (retry or not), not POSIX breadth.
enum class StatusCode {
  kOk = 0,
  kInvalidArgument,     // bad input; terminal
  kNotFound,
  kAlreadyExists,
  kFailedPrecondition,  // environment not ready (no hypervisor); terminal until it changes
  kUnavailable,         // network / registry 5xx / 429; retryable
  kDeadlineExceeded,    // retryable
  kResourceExhausted,   // ENOSPC; retryable with long backoff
  kCancelled,
  kPermissionDenied,
  kDataLoss,            // digest mismatch, corrupt file
  kInternal,
};

std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

  /// True for failures that may succeed if retried later.
  bool IsRetryable() const;

  /// Prepends a breadcrumb: "booting web-1: " + message.
  Status WithContext(std::string_view context) const&;
  Status WithContext(std::string_view context) &&;

  /// "NOT_FOUND: message" style rendering for logs.
  std::string ToString() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status OkStatus() { return Status(); }
inline Status InvalidArgument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
inline Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status AlreadyExists(std::string m) { return {StatusCode::kAlreadyExists, std::move(m)}; }
inline Status FailedPrecondition(std::string m) { return {StatusCode::kFailedPrecondition, std::move(m)}; }
inline Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
inline Status DeadlineExceeded(std::string m) { return {StatusCode::kDeadlineExceeded, std::move(m)}; }
inline Status ResourceExhausted(std::string m) { return {StatusCode::kResourceExhausted, std::move(m)}; }
inline Status Cancelled(std::string m) { return {StatusCode::kCancelled, std::move(m)}; }
inline Status PermissionDenied(std::string m) { return {StatusCode::kPermissionDenied, std::move(m)}; }
inline Status DataLoss(std::string m) { return {StatusCode::kDataLoss, std::move(m)}; }
inline Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }

/// Maps an errno value to a Status with `what` as context ("open /x: No such file").
Status ErrnoStatus(int err, std::string_view what);

/// A value or an error Status. Mirrors the std::expected surface.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    assert(!std::get<Status>(v_).ok() && "Result constructed from OK status");
  }

  bool has_value() const { return v_.index() == 0; }
  bool ok() const { return has_value(); }
  explicit operator bool() const { return has_value(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Status& error() const& { return std::get<1>(v_); }
  Status&& error() && { return std::get<1>(std::move(v_)); }
  /// OK when holding a value.
  Status status() const { return has_value() ? Status() : std::get<1>(v_); }

  T value_or(T fallback) const& { return has_value() ? value() : std::move(fallback); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace banger

#define BANGER_CONCAT_INNER_(a, b) a##b
#define BANGER_CONCAT_(a, b) BANGER_CONCAT_INNER_(a, b)

/// Returns the Status from the enclosing function if `expr` is not OK.
#define BANGER_RETURN_IF_ERROR(expr) \
  BANGER_RETURN_IF_ERROR_IMPL_(BANGER_CONCAT_(banger_status_, __COUNTER__), expr)
#define BANGER_RETURN_IF_ERROR_IMPL_(tmp, expr) \
  do {                                          \
    ::banger::Status tmp = (expr);              \
    if (!tmp.ok()) return tmp;                  \
  } while (0)

#define BANGER_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.has_value()) return std::move(tmp).error(); \
  lhs = std::move(tmp).value()

/// `BANGER_ASSIGN_OR_RETURN(auto x, F());` declares x from a Result or returns its error.
#define BANGER_ASSIGN_OR_RETURN(lhs, expr) \
  BANGER_ASSIGN_OR_RETURN_IMPL_(BANGER_CONCAT_(banger_result_, __COUNTER__), lhs, expr)
