// Pure parsers for what the host driver reads: `ip -j` output, resolv.conf
// and /proc/self/status. Kept apart from the driver so they are unit-tested
// on captured output without touching the host.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "reconciler/ports.h"

namespace banger::network {

/// InvalidArgument unless `name` is a plain interface name: 1-15 bytes of
/// [A-Za-z0-9_-]. Stricter than the kernel on purpose: such names are safe
/// inside nft strings and sysctl keys (a '.' would split a sysctl key).
Status CheckInterfaceName(std::string_view name);

/// Parses `ip -j -d addr show` (links with their details and addresses) into
/// observations by interface name. InvalidArgument when it is not ip's JSON.
Result<std::map<std::string, LinkObservation>> ParseLinks(std::string_view ip_json);

/// Parses `ip -j -4 route show table all` into sorted, distinct "a.b.c.d/N"
/// prefixes, leaving out the default route and local/broadcast routes (the
/// addresses the host itself holds). A bare "a.b.c.d" destination is a /32.
Result<std::vector<std::string>> ParseRoutedPrefixes(std::string_view ip_json);

/// The IPv4 nameservers of a resolv.conf, in order, without duplicates and
/// without the ones a guest cannot use: loopback (127.0.0.0/8, e.g.
/// systemd-resolved's 127.0.0.53), 0.0.0.0 and anything that is not IPv4.
std::vector<std::string> ParseResolvers(std::string_view resolv_conf);

/// Whether the CapEff line of a /proc/PID/status text has CAP_NET_ADMIN
/// (bit 12). InvalidArgument when there is no readable CapEff line.
Result<bool> HasCapNetAdmin(std::string_view proc_status);

}  // namespace banger::network
