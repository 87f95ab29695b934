// The rule set the nft golden test and the integration tests share: two
// networks (one isolated with nat off) and tcp/udp ports published on
// 127.0.0.1 and 0.0.0.0, listed in the engine's order (host address, protocol, port).
#pragma once

#include "reconciler/ports.h"

namespace banger::network {

inline NetworkRules TypicalRules() {
  NetworkRules r;
  r.bridges = {
      {"default", "bgr-default", "10.213.0.0/24", "10.213.0.1", 24, /*nat=*/true, /*isolated=*/false},
      {"lab", "bgr-lab", "10.213.1.0/24", "10.213.1.1", 24, /*nat=*/false, /*isolated=*/true},
  };
  r.ports = {
      {"web", "tcp", "0.0.0.0", 8443, "10.213.0.2", 443, "bgr-default"},
      {"dns", "udp", "0.0.0.0", 1053, "10.213.1.5", 53, "bgr-lab"},
      {"web", "tcp", "127.0.0.1", 8080, "10.213.0.2", 80, "bgr-default"},
      {"dns", "udp", "127.0.0.1", 5353, "10.213.1.5", 53, "bgr-lab"},
  };
  return r;
}

}  // namespace banger::network
