// The schedule validator (Note [One schedule validator] in schedule.h).
#include "schedule.h"

#include <algorithm>
#include <sstream>

#include "../check.h"

namespace tl {

namespace {

// Rank sets as bit masks, stored flat: mask (rank, segment) at ((rank·segs)+seg)·2·words. A mask has two halves of
// `words` 64-bit words: the towers whose values of this process it sums, then the towers whose values of every
// process it sums (after a remote step: Note [Remote steps] in remote.h).
struct MaskTable {
  int ranks;
  size_t segs, words;
  std::vector<uint64_t> bits;
  MaskTable(int r, size_t s) : ranks(r), segs(s), words((static_cast<size_t>(r) + 63) / 64), bits(r * s * 2 * words, 0) {}
  uint64_t* at(int rank, size_t seg) { return &bits[(static_cast<size_t>(rank) * segs + seg) * 2 * words]; }
  const uint64_t* at(int rank, size_t seg) const { return &bits[(static_cast<size_t>(rank) * segs + seg) * 2 * words]; }
};

// "0, 2, 3": the ranks in a mask.
std::string bitsOf(const uint64_t* m, size_t words) {
  std::ostringstream os;
  bool first = true;
  for (size_t w = 0; w < words; ++w)
    for (int b = 0; b < 64; ++b)
      if (m[w] >> b & 1) {
        os << (first ? "" : ", ") << w * 64 + b;
        first = false;
      }
  return os.str();
}

void checkSteps(const Schedule& s, int ranks, int64_t length, const std::string& where) {
  for (size_t p = 0; p < s.phases.size(); ++p) {
    const auto& phase = s.phases[p];
    TL_CHECK(static_cast<int>(phase.size()) == ranks,
             where << ": phases[" << p << "] must list exactly " << ranks << " towers' steps, got " << phase.size());
    std::vector<int> slotUser(ranks, -1);  // which tower runs a remote step on each slot in this phase
    for (int r = 0; r < ranks; ++r)
      for (size_t k = 0; k < phase[r].size(); ++k) {
        const CollStep& st = phase[r][k];
        const std::string at = where + ": phases[" + std::to_string(p) + "][" + std::to_string(r) + "][" + std::to_string(k) + "]";
        TL_CHECK(st.kind == CollStep::Reduce || st.kind == CollStep::Copy || st.kind == CollStep::Remote,
                 at << ": kind must be 0 (reduce), 1 (copy) or 2 (remote all-reduce), got " << st.kind);
        if (st.kind == CollStep::Remote) {
          TL_CHECK(s.collective != Collective::Broadcast, at << ": a broadcast schedule has no remote steps");
          TL_CHECK(s.collective != Collective::AllGather, at << ": an all-gather schedule has no remote steps");
          TL_CHECK(st.peer >= 0 && st.peer < ranks, at << ": a remote step's slot must be in [0, " << ranks << "), got " << st.peer);
          TL_CHECK(slotUser[st.peer] < 0 || slotUser[st.peer] == r,
                   at << ": towers " << slotUser[st.peer] << " and " << r << " both use slot " << st.peer << " in phase " << p
                      << "; a slot's context runs one remote all-reduce at a time");
          slotUser[st.peer] = r;
        } else {
          TL_CHECK(st.peer >= 0 && st.peer < ranks && st.peer != r,
                   at << ": peer must be another tower in [0, " << ranks << "), got " << st.peer);
        }
        TL_CHECK(st.offset >= 0 && st.length >= 0 && st.offset <= length - st.length,
                 at << ": range [" << st.offset << ", " << st.offset + st.length << ") is outside [0, " << length << ")");
      }
    // Conflicts: what r writes (its own buffer) must not overlap what others read from r in this phase. A remote
    // step writes its tower's range and reads no other tower.
    for (int r = 0; r < ranks; ++r)
      for (const CollStep& w : phase[r])
        for (int q = 0; q < ranks; ++q)
          for (const CollStep& rd : phase[q])
            if (rd.kind != CollStep::Remote && rd.peer == r && w.length > 0 && rd.length > 0 &&
                rd.offset < w.offset + w.length && w.offset < rd.offset + rd.length)
              TL_FAIL(where << ": in phase " << p << ", tower " << r << " writes [" << w.offset << ", " << w.offset + w.length
                            << ") while tower " << q << " reads [" << rd.offset << ", " << rd.offset + rd.length
                            << ") of it; put them in different phases");
  }
}

// "towers 0, 2" for a local-only mask; "towers 0, 2 of this process and 1 of every process" when it has both halves.
std::string describe(const uint64_t* m, size_t words) {
  const std::string local = bitsOf(m, words), global = bitsOf(m + words, words);
  if (global.empty()) return "towers " + local;
  if (local.empty()) return "towers " + global + " of every process";
  return "towers " + local + " of this process and " + global + " of every process";
}

// Symbolic run over the elementary segments: who contributed to each (a mask), and which reduction produced it.
// The shards of a reduce-scatter or an all-gather tile [0, length) in rank order; other collectives have none.
void checkShards(const Schedule& s, int ranks, int64_t length, const std::string& where) {
  const bool sharded = s.collective == Collective::ReduceScatter || s.collective == Collective::AllGather;
  if (!sharded) {
    TL_CHECK(s.shards.empty(), where << ": only a reduce-scatter or an all-gather has shards");
    return;
  }
  TL_CHECK(static_cast<int>(s.shards.size()) == ranks, where << ": expected one shard per tower (" << ranks << "), got " << s.shards.size());
  int64_t at = 0;
  for (int r = 0; r < ranks; ++r) {
    const auto [off, len] = s.shards[r];
    TL_CHECK(off == at && len >= 0 && len <= length - off,
             where << ": shards[" << r << "] = [" << off << ", " << len << "] must start at " << at
                   << " and fit the buffer; shards tile [0, " << length << ") in rank order");
    at = off + len;
  }
  TL_CHECK(at == length, where << ": the shards end at " << at << ", not at the buffer's end " << length);
}

// The rank owning element segment [b, e) of a sharded collective.
int ownerOf(const Schedule& s, int64_t b) {
  for (size_t r = 0; r < s.shards.size(); ++r)
    if (b >= s.shards[r].first && b < s.shards[r].first + s.shards[r].second) return static_cast<int>(r);
  return -1;
}

void checkSums(const Schedule& s, int ranks, int64_t length, const std::string& where) {
  std::vector<int64_t> bounds{0, length};
  for (const auto& [off, len] : s.shards) bounds.push_back(off);
  bool remote = false;
  for (const auto& phase : s.phases)
    for (const auto& steps : phase)
      for (const CollStep& st : steps) {
        bounds.push_back(st.offset);
        bounds.push_back(st.offset + st.length);
        remote |= st.kind == CollStep::Remote;
      }
  std::sort(bounds.begin(), bounds.end());
  bounds.erase(std::unique(bounds.begin(), bounds.end()), bounds.end());
  const size_t segs = bounds.size() - 1;
  auto segOf = [&](int64_t b) { return static_cast<size_t>(std::lower_bound(bounds.begin(), bounds.end(), b) - bounds.begin()); };
  MaskTable masks(ranks, segs);
  const size_t W = masks.words;
  std::vector<int64_t> origin(static_cast<size_t>(ranks) * segs);  // r: rank r's input; > ranks: a reduction
  for (int r = 0; r < ranks; ++r)
    for (size_t g = 0; g < segs; ++g) {
      masks.at(r, g)[r / 64] = uint64_t(1) << (r % 64);
      origin[r * segs + g] = r;
    }
  std::vector<uint64_t> overlap(W);
  for (size_t p = 0; p < s.phases.size(); ++p) {
    MaskTable next = masks;                    // reads see the state before the phase, writes go here
    std::vector<int64_t> nextOrigin = origin;
    for (int r = 0; r < ranks; ++r)
      for (const CollStep& st : s.phases[p][r])
        for (size_t g = segOf(st.offset), end = segOf(st.offset + st.length); g < end; ++g) {
          uint64_t* dst = next.at(r, g);
          const int64_t produced = ranks + static_cast<int64_t>((p * ranks + r) * segs + g);
          if (st.kind == CollStep::Remote) {
            const bool crossed = std::any_of(dst + W, dst + 2 * W, [](uint64_t w) { return w != 0; });
            TL_CHECK(!crossed, where << ": phase " << p << ": tower " << r << "'s remote all-reduce of [" << bounds[g] << ", "
                                     << bounds[g + 1] << ") sums " << describe(dst, W)
                                     << ", which already crossed processes; each process's values must cross once");
            for (size_t w = 0; w < W; ++w) dst[W + w] = dst[w], dst[w] = 0;
            nextOrigin[r * segs + g] = produced;  // one reduction, the same bytes in every process
            continue;
          }
          const uint64_t* src = masks.at(static_cast<int>(st.peer), g);
          if (st.kind == CollStep::Copy) {
            std::copy(src, src + 2 * W, dst);
            nextOrigin[r * segs + g] = origin[st.peer * segs + g];
            continue;
          }
          bool any = false;  // a tower counted in both, whether for this process only or for every process
          for (size_t w = 0; w < W; ++w) any |= (overlap[w] = (dst[w] | dst[W + w]) & (src[w] | src[W + w])) != 0;
          if (any)
            TL_FAIL(where << ": phase " << p << ": tower " << r << " adds tower " << st.peer << "'s [" << bounds[g] << ", "
                          << bounds[g + 1] << ") which already counts tower(s) " << bitsOf(overlap.data(), W)
                          << "; each contribution must be summed once");
          for (size_t w = 0; w < 2 * W; ++w) dst[w] |= src[w];
          nextOrigin[r * segs + g] = produced;
        }
    masks = std::move(next);
    origin = std::move(nextOrigin);
  }
  if (s.collective == Collective::AllGather) {
    for (int r = 0; r < ranks; ++r)
      for (size_t g = 0; g < segs; ++g) {
        const int q = ownerOf(s, bounds[g]);
        TL_CHECK(origin[r * segs + g] == q, where << ": at the end tower " << r << "'s [" << bounds[g] << ", " << bounds[g + 1]
                                                  << ") is not tower " << q << "'s values copied verbatim; an all-gather "
                                                     "copies each tower's shard to every tower");
      }
    return;
  }
  if (s.collective == Collective::Broadcast) {
    for (int r = 0; r < ranks; ++r)
      for (size_t g = 0; g < segs; ++g)
        TL_CHECK(origin[r * segs + g] == 0, where << ": at the end tower " << r << "'s [" << bounds[g] << ", " << bounds[g + 1]
                                                  << ") is not tower 0's values copied verbatim; a broadcast copies tower 0's "
                                                     "buffer to every tower");
    return;
  }
  // Every tower's values in the sum: of every process when the schedule crosses processes, else of this one.
  std::vector<uint64_t> full(2 * W, 0);
  for (int r = 0; r < ranks; ++r) full[(remote ? W : 0) + r / 64] |= uint64_t(1) << (r % 64);
  const bool scatter = s.collective == Collective::ReduceScatter;
  for (int r = 0; r < ranks; ++r)
    for (size_t g = 0; g < segs; ++g) {
      if (scatter && ownerOf(s, bounds[g]) != r) continue;  // only the owner's shard must hold the sum
      const uint64_t* m = masks.at(r, g);
      TL_CHECK(std::equal(m, m + 2 * W, full.begin()),
               where << ": at the end tower " << r << "'s [" << bounds[g] << ", " << bounds[g + 1] << ") sums " << describe(m, W)
                     << " only; every tower needs the sum of all " << ranks << (remote ? " towers of every process" : ""));
      TL_CHECK(scatter || origin[r * segs + g] == origin[g],
               where << ": towers 0 and " << r << " hold separately computed sums of [" << bounds[g] << ", " << bounds[g + 1]
                     << "); copy one reduced chunk verbatim so replicas stay bit-identical");
    }
}

}  // namespace

std::string scheduleWhere(const std::string& name, int ranks, int64_t length) {
  return "schedule '" + name + "' for " + std::to_string(ranks) + " towers and " + std::to_string(length) + " elements";
}

void validateSchedule(const Schedule& s, int ranks, int64_t length) {
  TL_CHECK(ranks >= 1 && length >= 0, "a schedule needs at least one tower and a non-negative length, got " << ranks
                                                                                                             << " towers and " << length << " elements");
  const std::string where = scheduleWhere(s.name, ranks, length);
  checkSteps(s, ranks, length, where);
  checkShards(s, ranks, length, where);
  if (s.collective == Collective::Barrier) {
    TL_CHECK(s.phases.empty(), where << ": a barrier has no phases (it only waits for every tower), got " << s.phases.size());
    return;
  }
  if (length == 0) return;
  checkSums(s, ranks, length, where);
}

}  // namespace tl
