#include "network/host_driver.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <system_error>
#include <utility>

#include "base/files.h"
#include "base/ipv4.h"
#include "base/strings.h"
#include "network/host_facts.h"
#include "network/nft.h"

namespace banger::network {
namespace {

namespace fs = std::filesystem;
using Argv = std::vector<std::string>;

// A sysctl key and the value banger needs it to have.
struct Sysctl {
  std::string key;
  std::string why;  // for the log line when banger changes it
};

bool Exists(const fs::path& p) {
  std::error_code ec;
  return fs::exists(p, ec);
}

Status CheckNamespaceName(const std::string& netns) {
  if (netns.empty() || netns == "." || netns == ".." || netns.find('/') != std::string::npos) {
    return InvalidArgument("network namespace name \"" + netns + "\" is not a plain name");
  }
  return OkStatus();
}

class HostNetworkDriver final : public NetworkDriver {
 public:
  HostNetworkDriver(CommandRunner& runner, std::string netns, HostDriverOptions options)
      : runner_(runner), netns_(std::move(netns)), options_(std::move(options)) {}

  std::string Namespace() const override { return netns_; }

  Status CheckAvailable() override {
    BANGER_RETURN_IF_ERROR(CheckPrivileges());
    for (const char* program : {"ip", "nft", "sysctl"}) {
      if (!FindProgram(program)) {
        return FailedPrecondition(std::string("bridged networking needs `") + program +
                                  "`, which is not on PATH; scripts/setup.sh installs iproute2, nftables "
                                  "and procps");
      }
    }
    if (!Exists(options_.tun_device)) {
      return FailedPrecondition(options_.tun_device.string() +
                                " is missing, so no taps can be made; load the tun module (`modprobe tun`) "
                                "or give the container the device");
    }
    if (netns_.empty()) return OkStatus();
    BANGER_RETURN_IF_ERROR(CheckNamespaceName(netns_));
    if (!Exists(options_.netns_dir / netns_)) {
      return FailedPrecondition("network namespace " + netns_ + " does not exist (no " +
                                (options_.netns_dir / netns_).string() + "); create it with `ip netns add " +
                                netns_ + "` or unset BANGER_NETNS");
    }
    return OkStatus();
  }

  Status EnsureBridge(const BridgeConfig& bridge) override {
    std::string what = "bridge " + bridge.bridge + " of network " + bridge.network;
    return DoEnsureBridge(bridge).WithContext(what);
  }

  Status DeleteBridge(const std::string& bridge) override {
    return DeleteLink(bridge, "bridge").WithContext("deleting bridge " + bridge);
  }

  Status EnsureTap(const TapConfig& tap) override {
    return DoEnsureTap(tap).WithContext("tap " + tap.tap + " on bridge " + tap.bridge);
  }

  Status DeleteTap(const std::string& tap) override {
    return DeleteLink(tap, "tun").WithContext("deleting tap " + tap);
  }

  Status ApplyRules(const NetworkRules& rules) override {
    BANGER_RETURN_IF_ERROR(ValidateNetworkRules(rules).WithContext("nft table inet banger"));
    // The script goes to nft on stdin: nothing to write, so no file is left
    // behind when banger dies mid-apply.
    auto loaded = Run(Exec("nft", {"-f", "-"}), RenderNftTable(rules));
    BANGER_RETURN_IF_ERROR(loaded.status().WithContext("loading nft table inet banger"));
    // Packets to a port published beyond loopback arrive on an uplink and are
    // forwarded into the bridge: that takes the global switch, also for a
    // network without nat (whose EnsureBridge leaves it alone).
    auto beyond_loopback = std::find_if(rules.ports.begin(), rules.ports.end(), [](const PublishedPort& p) {
      return !StartsWith(p.host_address, "127.");
    });
    if (beyond_loopback == rules.ports.end()) return OkStatus();
    return EnsureSysctls({{"net.ipv4.ip_forward", "port " + std::to_string(beyond_loopback->host_port) + "/" +
                                                      beyond_loopback->protocol + " is published on " +
                                                      beyond_loopback->host_address}});
  }

  Result<bool> RulesCurrent(const NetworkRules& rules) override {
    BANGER_RETURN_IF_ERROR(ValidateNetworkRules(rules).WithContext("nft table inet banger"));
    bool want_table = !rules.bridges.empty() || !rules.ports.empty();
    BANGER_ASSIGN_OR_RETURN(std::optional<std::string> listing, ListBangerTable());
    if (!listing) {
      if (want_table) spdlog::info("nft table inet banger{} is missing", InNamespace());
      return !want_table;
    }
    if (!want_table) return false;
    auto live = ParseNftTableJson(*listing);
    if (!live.ok()) return live.error().WithContext("reading nft table inet banger");
    std::string difference = DescribeNftDifference(ExpectedNftSummary(rules), *live);
    if (difference.empty()) return true;
    spdlog::info("nft table inet banger{} is not current: {}", InNamespace(), difference);
    return false;
  }

  Result<std::map<std::string, LinkObservation>> ObserveLinks() override {
    // `ip -d addr show` carries link details (kind, master, port flags) and
    // addresses in one listing.
    BANGER_ASSIGN_OR_RETURN(CommandOutput out, Run(Ip({"-j", "-d", "addr", "show"})));
    auto links = ParseLinks(out.stdout_data);
    if (!links.ok()) return links.error().WithContext("listing interfaces");
    return links;
  }

  Result<std::vector<std::string>> RoutedPrefixes() override {
    BANGER_ASSIGN_OR_RETURN(CommandOutput out, Run(Ip({"-j", "-4", "route", "show", "table", "all"})));
    auto prefixes = ParseRoutedPrefixes(out.stdout_data);
    if (!prefixes.ok()) return prefixes.error().WithContext("listing routes");
    return prefixes;
  }

  std::vector<std::string> GuestResolvers() override {
    // `ip netns exec` bind-mounts /etc/netns/NS/resolv.conf over
    // /etc/resolv.conf for programs in the namespace; do the same.
    fs::path path = options_.etc_dir / "resolv.conf";
    if (!netns_.empty() && Exists(options_.etc_dir / "netns" / netns_ / "resolv.conf")) {
      path = options_.etc_dir / "netns" / netns_ / "resolv.conf";
    }
    auto text = ReadFile(path);
    if (!text.ok()) {
      spdlog::warn("no nameservers for guests: {}", text.error().message());
      return {};
    }
    std::vector<std::string> servers = ParseResolvers(*text);
    if (servers.empty() && netns_.empty()) {
      // A local stub (systemd-resolved's 127.0.0.53) is unreachable from a
      // guest; the stub's own upstream servers are not.
      if (auto upstream = ReadFile(options_.systemd_resolv_conf); upstream.ok()) {
        servers = ParseResolvers(*upstream);
      }
    }
    if (servers.empty()) spdlog::warn("no nameserver a guest can reach in {}; guests get the bridge address", path.string());
    return servers;
  }

 private:
  Status CheckPrivileges() {
    auto status = ReadFile(options_.proc_status);
    if (!status.ok()) return status.error().WithContext("checking CAP_NET_ADMIN");
    auto has = HasCapNetAdmin(*status);
    if (!has.ok()) return has.error().WithContext(options_.proc_status.string());
    if (*has) return OkStatus();
    return FailedPrecondition(
        "bridged networking needs CAP_NET_ADMIN to create bridges, taps and nft rules; run banger as root "
        "(or grant it CAP_NET_ADMIN), or give the sandboxes network.mode: user (QEMU user-mode NAT, no host interfaces)");
  }

  Status DoEnsureBridge(const BridgeConfig& b) {
    BANGER_RETURN_IF_ERROR(CheckInterfaceName(b.bridge));
    BANGER_ASSIGN_OR_RETURN(Ipv4 gateway, CheckGateway(b));
    BANGER_ASSIGN_OR_RETURN(auto links, ObserveLinks());
    LinkObservation link;
    if (auto it = links.find(b.bridge); it != links.end()) {
      link = it->second;
      if (link.kind != "bridge") return WrongKind(link, "bridge");
    } else {
      BANGER_RETURN_IF_ERROR(Run(Ip({"link", "add", b.bridge, "type", "bridge"})).status());
    }
    std::string address = ToString(gateway) + "/" + std::to_string(b.prefix);
    if (std::find(link.addresses.begin(), link.addresses.end(), address) == link.addresses.end()) {
      // Other addresses someone added stay; banger only needs its own.
      BANGER_RETURN_IF_ERROR(Run(Ip({"addr", "add", address, "dev", b.bridge})).status());
    }
    if (!link.up) BANGER_RETURN_IF_ERROR(Run(Ip({"link", "set", "dev", b.bridge, "up"})).status());
    BANGER_RETURN_IF_ERROR(EnsureLoopbackUp(links));
    return EnsureSysctls(BridgeSysctls(b));
  }

  // Ports published on 127.0.0.1 need `lo` up. It always is in the host's
  // namespace, but `ip netns add` makes namespaces with it down.
  Status EnsureLoopbackUp(const std::map<std::string, LinkObservation>& links) {
    auto lo = links.find("lo");
    if (lo == links.end() || lo->second.up) return OkStatus();
    spdlog::info("bringing up lo{} for ports published on 127.0.0.1", InNamespace());
    return Run(Ip({"link", "set", "dev", "lo", "up"})).status();
  }

  static Result<Ipv4> CheckGateway(const BridgeConfig& b) {
    auto subnet = ParseIpv4Prefix(b.subnet);
    if (!subnet.ok()) return subnet.error().WithContext("subnet");
    auto gateway = ParseIpv4(b.gateway);
    if (!gateway.ok()) return gateway.error().WithContext("gateway");
    if (subnet->length != b.prefix || !subnet->Contains(*gateway)) {
      return InvalidArgument("gateway " + b.gateway + "/" + std::to_string(b.prefix) + " is not an address of subnet " +
                             b.subnet);
    }
    return *gateway;
  }

  std::vector<Sysctl> BridgeSysctls(const BridgeConfig& b) const {
    std::string conf = "net.ipv4.conf." + b.bridge + ".";
    std::vector<Sysctl> out = {
        // IPv4 forwarding is decided per input interface: guests' packets
        // arrive on the bridge.
        {conf + "forwarding", "guests on " + b.bridge + " reach beyond it"},
        // A port published on 127.0.0.1 is DNATed in the output chain and
        // leaves through the bridge with source 127.0.0.1. The kernel drops
        // loopback-sourced packets on any other interface ("martian")
        // unless route_localnet is on; the postrouting chain then rewrites
        // the source to the bridge's address so the guest can answer.
        {conf + "route_localnet", "ports published on 127.0.0.1 reach guests on " + b.bridge},
    };
    if (b.nat) {
      // Replies to masqueraded traffic come in on the uplink, whose
      // forwarding the global switch turns on.
      out.push_back({"net.ipv4.ip_forward", "network " + b.network + " masquerades traffic leaving the host"});
    }
    return out;
  }

  // Reads every key in one run and writes only those that are not 1.
  Status EnsureSysctls(const std::vector<Sysctl>& wanted) {
    Argv read = {"-n"};
    for (const Sysctl& s : wanted) read.push_back(s.key);
    BANGER_ASSIGN_OR_RETURN(CommandOutput out, Run(Exec("sysctl", read)));
    std::vector<std::string> values = Split(Trim(out.stdout_data), '\n');
    Argv write = {"-q", "-w"};
    for (size_t i = 0; i < wanted.size(); ++i) {
      std::string value = i < values.size() ? std::string(Trim(values[i])) : "";
      if (value == "1") continue;
      spdlog::info("setting sysctl {}=1 (was {}){}: {}", wanted[i].key, value.empty() ? "unknown" : value,
                   InNamespace(), wanted[i].why);
      write.push_back(wanted[i].key + "=1");
    }
    if (write.size() == 2) return OkStatus();
    return Run(Exec("sysctl", write)).status();
  }

  Status DoEnsureTap(const TapConfig& t) {
    BANGER_RETURN_IF_ERROR(CheckInterfaceName(t.tap));
    BANGER_RETURN_IF_ERROR(CheckInterfaceName(t.bridge));
    BANGER_ASSIGN_OR_RETURN(auto links, ObserveLinks());
    auto bridge = links.find(t.bridge);
    if (bridge == links.end() || bridge->second.kind != "bridge") {
      return FailedPrecondition("bridge " + t.bridge + " does not exist; ensure the bridge before its taps");
    }
    LinkObservation link;
    bool created = false;
    if (auto it = links.find(t.tap); it != links.end()) {
      link = it->second;
      if (link.kind != "tun") return WrongKind(link, "tap");
    } else {
      // Persistent (ip tuntap makes it so): QEMU attaches with
      // -netdev tap,ifname=TAP,script=no,downscript=no and the tap stays
      // when QEMU exits.
      BANGER_RETURN_IF_ERROR(Run(Ip({"tuntap", "add", "dev", t.tap, "mode", "tap"})).status());
      created = true;
    }
    Status configured = ConfigureTap(t, link);
    if (!configured.ok() && created) {
      // Leave nothing half-made behind; the next EnsureTap starts afresh.
      Status removed = Run(Ip({"link", "del", "dev", t.tap})).status();
      if (!removed.ok()) spdlog::warn("tap {}: removing it after a failed setup: {}", t.tap, removed.message());
    }
    return configured;
  }

  Status ConfigureTap(const TapConfig& t, const LinkObservation& link) {
    // A tap whose bridge was deleted (and maybe recreated) has lost its
    // master; enslaving it again also resets its port flags.
    bool enslaved = link.master == t.bridge;
    if (!enslaved) BANGER_RETURN_IF_ERROR(Run(Ip({"link", "set", "dev", t.tap, "master", t.bridge})).status());
    bool isolated = enslaved && link.isolated;
    if (isolated != t.isolated) {
      // Bridge port isolation: isolated ports forward only to non-isolated
      // ones (the bridge itself), never to each other.
      BANGER_RETURN_IF_ERROR(
          Run(Ip({"link", "set", "dev", t.tap, "type", "bridge_slave", "isolated", t.isolated ? "on" : "off"}))
              .status());
    }
    if (!link.up) BANGER_RETURN_IF_ERROR(Run(Ip({"link", "set", "dev", t.tap, "up"})).status());
    return OkStatus();
  }

  // Deletes interface `name` if present; refuses to delete one of another kind.
  Status DeleteLink(const std::string& name, std::string_view kind) {
    BANGER_RETURN_IF_ERROR(CheckInterfaceName(name));
    BANGER_ASSIGN_OR_RETURN(auto links, ObserveLinks());
    auto it = links.find(name);
    if (it == links.end()) return OkStatus();
    if (it->second.kind != kind) return WrongKind(it->second, kind == "tun" ? "tap" : std::string(kind));
    return Run(Ip({"link", "del", "dev", name})).status();
  }

  Status WrongKind(const LinkObservation& link, const std::string& wanted) const {
    return FailedPrecondition("interface " + link.name + InNamespace() + " exists but is " +
                              (link.kind.empty() ? std::string("a plain device") : "a " + link.kind) +
                              ", not a " + wanted + "; banger leaves it alone: remove it or pick another name");
  }

  // The live table as JSON, or nothing when there is no such table.
  Result<std::optional<std::string>> ListBangerTable() {
    Argv list = Exec("nft", {"-j", "list", "table", "inet", "banger"});
    BANGER_ASSIGN_OR_RETURN(CommandOutput out, RunUnchecked(list));
    if (out.exit_code == 0) return std::optional<std::string>(std::move(out.stdout_data));
    // Tell "no such table" from a real failure without parsing messages.
    BANGER_ASSIGN_OR_RETURN(CommandOutput tables, Run(Exec("nft", {"-j", "list", "tables"})));
    auto present = NftTablesHaveBanger(tables.stdout_data);
    if (!present.ok()) return present.error().WithContext("listing nft tables");
    if (!*present) return std::optional<std::string>();
    return Failed(list, out);
  }

  Argv Ip(Argv args) const {
    Argv argv = {"ip"};
    if (!netns_.empty()) argv.insert(argv.end(), {"-n", netns_});
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }

  // `program args...`, inside the namespace when there is one.
  Argv Exec(const std::string& program, Argv args) const {
    Argv argv;
    if (!netns_.empty()) argv = {"ip", "netns", "exec", netns_};
    argv.push_back(program);
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }

  std::string InNamespace() const { return netns_.empty() ? "" : " in network namespace " + netns_; }

  Result<CommandOutput> RunUnchecked(const Argv& argv, std::string stdin_data = {}) {
    CommandSpec spec;
    spec.argv = argv;
    spec.stdin_data = std::move(stdin_data);
    spec.timeout = options_.command_timeout;
    spec.env = {{"LC_ALL", "C"}};
    auto out = runner_.Run(spec);
    if (!out.ok()) return out.error().WithContext("`" + Join(argv, " ") + "`");
    return out;
  }

  // Runs argv; a non-zero exit is an error quoting the command and its stderr.
  Result<CommandOutput> Run(const Argv& argv, std::string stdin_data = {}) {
    BANGER_ASSIGN_OR_RETURN(CommandOutput out, RunUnchecked(argv, std::move(stdin_data)));
    if (out.exit_code != 0) return Failed(argv, out);
    return out;
  }

  static Status Failed(const Argv& argv, const CommandOutput& out) {
    std::string tail(Trim(out.stderr_data));
    if (tail.size() > 800) tail = "..." + tail.substr(tail.size() - 800);
    return Internal("`" + Join(argv, " ") + "` exited with status " + std::to_string(out.exit_code) +
                    (tail.empty() ? "" : ": " + tail));
  }

  CommandRunner& runner_;
  const std::string netns_;
  const HostDriverOptions options_;
};

}  // namespace

std::unique_ptr<NetworkDriver> MakeHostNetworkDriver(CommandRunner& runner, std::string netns) {
  return MakeHostNetworkDriver(runner, std::move(netns), HostDriverOptions{});
}

std::unique_ptr<NetworkDriver> MakeHostNetworkDriver(CommandRunner& runner, std::string netns,
                                                     HostDriverOptions options) {
  return std::make_unique<HostNetworkDriver>(runner, std::move(netns), std::move(options));
}

}  // namespace banger::network
