#include "cli/network_commands.h"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>

#include "cli/output.h"
#include "spec/loader.h"

namespace banger::cli {

void AddNetworkCommands(CLI::App& app, HostOpener open_host, int& exit_code) {
  auto* network = app.add_subcommand("network", "Inspect bridged networks (declare them with kind: Network)");
  network->footer("Example:\n  banger network ls");
  network->require_subcommand(1);
  auto* ls = network->add_subcommand("ls", "List networks, their subnets, bridges and address leases");
  ls->footer("Examples:\n  banger network ls\n  banger network ls -o json");
  auto* output = new std::string("table");
  ls->add_option("-o,--output", *output, "table|json")->check(CLI::IsMember({"table", "json"}));
  ls->callback([=, &exit_code] {
    auto h = open_host();
    if (!h) {
      exit_code = PrintError(h.error());
      return;
    }
    StateStore& store = (*h)->store();
    auto networks = store.ListNetworks();
    auto leases = store.ListLeases("");
    if (!networks || !leases) {
      exit_code = PrintError(!networks ? networks.error() : leases.error());
      return;
    }
    std::map<std::string, std::vector<const LeaseRecord*>> by_network;
    for (const auto& l : *leases) by_network[l.network].push_back(&l);
    if (*output == "json") {
      nlohmann::json out = nlohmann::json::array();
      for (const auto& n : *networks) {
        auto spec = NetworkSpecFromCanonicalJson(n.spec_json);
        nlohmann::json jl = nlohmann::json::array();
        for (const auto* l : by_network[n.name]) {
          jl.push_back({{"sandbox", l->sandbox}, {"address", l->address}, {"mac", l->mac}});
        }
        out.push_back({{"name", n.name},
                       {"subnet", n.subnet},
                       {"gateway", n.gateway},
                       {"bridge", n.bridge},
                       {"nat", spec.ok() ? spec->nat : true},
                       {"isolated", spec.ok() ? spec->isolated : false},
                       {"declared", n.declared},
                       {"owner", n.owner},
                       {"leases", jl}});
      }
      std::printf("%s\n", out.dump(2).c_str());
      exit_code = 0;
      return;
    }
    std::vector<std::vector<std::string>> rows = {
        {"NAME", "SUBNET", "BRIDGE", "NAT", "ISOLATED", "SANDBOXES", "DECLARED BY"}};
    for (const auto& n : *networks) {
      auto spec = NetworkSpecFromCanonicalJson(n.spec_json);
      std::string members;
      for (const auto* l : by_network[n.name]) members += (members.empty() ? "" : ",") + l->sandbox + "=" + l->address;
      rows.push_back({n.name, n.subnet, n.bridge, spec.ok() && !spec->nat ? "no" : "yes",
                      spec.ok() && spec->isolated ? "yes" : "no", members.empty() ? "-" : members,
                      n.declared ? n.owner : "(implicit)"});
    }
    if (networks->empty()) {
      std::printf("No networks. Bridged sandboxes create the default one; declare others with kind: Network.\n");
    } else {
      std::printf("%s", RenderTable(rows).c_str());
    }
    exit_code = 0;
  });
}

}  // namespace banger::cli
