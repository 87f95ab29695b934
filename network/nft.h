// The nftables side of bridged networking: the whole `inet banger` table
// rendered from NetworkRules (pure, golden-tested), and the summary used to
// tell whether the live table is the one banger would write.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "reconciler/ports.h"

namespace banger::network {

/// The table comment; `nft list table inet banger` shows it first.
inline constexpr std::string_view kNftTableComment = "managed by banger; regenerated on every apply";

/// InvalidArgument naming the offending bridge or port when `rules` cannot be
/// rendered safely: interface names that are not plain ([A-Za-z0-9_-], at most
/// 15 bytes), addresses or subnets that do not parse, a protocol other than
/// tcp/udp, port 0, a name holding a quote or control character, a comment
/// longer than nft accepts, a bridge listed twice, or two ports claiming the
/// same host address, protocol and port (0.0.0.0 claims every address).
Status ValidateNetworkRules(const NetworkRules& rules);

/// The nft script that makes table `inet banger` hold exactly `rules`, as one
/// transaction for `nft -f`: it creates the table (so that the delete cannot
/// fail), deletes it and defines it anew, so the swap is atomic and no other
/// table is touched. With no bridges and no ports the script only removes the
/// table. Every rule carries a comment saying what it is for. Input order does
/// not matter: bridges and ports are sorted first, so equal rule sets render
/// byte-identical scripts.
/// REQUIRES: ValidateNetworkRules(rules).ok()
std::string RenderNftTable(const NetworkRules& rules);

/// One base chain as nft reports it, with its rules reduced to their comments.
struct NftChainSummary {
  std::string name;
  std::string type;      // "nat", "filter"
  std::string hook;      // "prerouting", ...
  int priority = 0;      // numeric: dstnat = -100, srcnat = 100, filter = 0
  std::string policy;    // "accept"
  std::vector<std::string> rule_comments;  // in rule order; "" for a rule without one
  bool operator==(const NftChainSummary&) const = default;
};

/// Table `inet banger` reduced to what RulesCurrent compares. Rule comments
/// spell out everything a rule depends on (sandbox, addresses, ports, bridge,
/// subnet), so equal summaries mean equal rules unless someone edited a rule
/// by hand and kept its comment.
struct NftTableSummary {
  /// nft 1.0.6 (Debian 12) leaves table comments out of its JSON output, so
  /// a live summary may have none; it is compared only when present.
  std::optional<std::string> comment;
  std::vector<NftChainSummary> chains;  // sorted by name
  bool operator==(const NftTableSummary&) const = default;
};

/// What `nft -j list table inet banger` shows after loading RenderNftTable(rules).
/// REQUIRES: ValidateNetworkRules(rules).ok()
NftTableSummary ExpectedNftSummary(const NetworkRules& rules);

/// Parses `nft -j list table inet banger`. InvalidArgument when it is not
/// nft's JSON.
Result<NftTableSummary> ParseNftTableJson(std::string_view json);

/// Whether `nft -j list tables` lists table inet banger.
Result<bool> NftTablesHaveBanger(std::string_view json);

/// "" when `live` is what `expected` describes, else the first difference in
/// words ("chain forward: 0 rules, expected 4").
std::string DescribeNftDifference(const NftTableSummary& expected, const NftTableSummary& live);

}  // namespace banger::network
