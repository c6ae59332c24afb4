// Rendezvous records (record.h) and rank labels.
#include "record.h"

#include <map>
#include <sstream>

#include "../check.h"

namespace tl {
namespace group {

namespace {
constexpr int kRecordVersion = 1;
}

std::string PeerInfo::label() const {
  std::string s = "rank " + std::to_string(rank) + " on host " + hostname;
  if (!address.empty() && address != hostname) s += " (" + address + ")";
  return s;
}

std::string encodeRecord(const PeerInfo& p) {
  std::ostringstream os;
  os << "version=" << kRecordVersion << "\nrank=" << p.rank << "\nsize=" << p.size << "\nlocalRank=" << p.localRank
     << "\nlocalSize=" << p.localSize << "\nslots=" << p.slots << "\nhostname=" << p.hostname << "\naddress=" << p.address
     << "\npid=" << p.pid << "\nproof=" << p.proof << "\nnonce=" << p.nonce << "\n";
  return os.str();
}

PeerInfo decodeRecord(const std::string& key, const std::string& text) {
  std::map<std::string, std::string> f;
  std::istringstream is(text);
  for (std::string line; std::getline(is, line);) {
    const size_t eq = line.find('=');
    if (eq != std::string::npos) f[line.substr(0, eq)] = line.substr(eq + 1);
  }
  auto str = [&](const char* k) -> const std::string& {
    auto it = f.find(k);
    TL_CHECK(it != f.end(), "rendezvous record '" << key << "' has no field '" << k
                                                  << "': another program, or another towerline version, wrote it");
    return it->second;
  };
  auto num = [&](const char* k) -> int64_t {
    const std::string& v = str(k);
    TL_CHECK(!v.empty() && v.find_first_not_of("-0123456789") == std::string::npos,
             "rendezvous record '" << key << "': field '" << k << "' must be an integer, got '" << v << "'");
    return std::stoll(v);
  };
  TL_CHECK(num("version") == kRecordVersion, "rendezvous record '" << key << "' has format version " << num("version")
                                                                   << ", this towerline writes " << kRecordVersion
                                                                   << ": every rank must run the same towerline version");
  PeerInfo p;
  p.rank = static_cast<int>(num("rank"));
  p.size = static_cast<int>(num("size"));
  p.localRank = static_cast<int>(num("localRank"));
  p.localSize = static_cast<int>(num("localSize"));
  p.slots = static_cast<int>(num("slots"));
  p.hostname = str("hostname");
  p.address = str("address");
  p.pid = num("pid");
  p.proof = str("proof");
  p.nonce = str("nonce");
  return p;
}

}  // namespace group
}  // namespace tl
