// The schedule validator (Note [One schedule validator] in schedule.h).
#include "schedule.h"

#include <algorithm>
#include <sstream>

#include "../check.h"

namespace tl {

namespace {

// Rank sets as bit masks of `words` 64-bit words, stored flat: mask (rank, segment) at ((rank·segs)+seg)·words.
struct MaskTable {
  int ranks;
  size_t segs, words;
  std::vector<uint64_t> bits;
  MaskTable(int r, size_t s) : ranks(r), segs(s), words((static_cast<size_t>(r) + 63) / 64), bits(r * s * words, 0) {}
  uint64_t* at(int rank, size_t seg) { return &bits[(static_cast<size_t>(rank) * segs + seg) * words]; }
  const uint64_t* at(int rank, size_t seg) const { return &bits[(static_cast<size_t>(rank) * segs + seg) * words]; }
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
    for (int r = 0; r < ranks; ++r)
      for (size_t k = 0; k < phase[r].size(); ++k) {
        const CollStep& st = phase[r][k];
        const std::string at = where + ": phases[" + std::to_string(p) + "][" + std::to_string(r) + "][" + std::to_string(k) + "]";
        TL_CHECK(st.kind == CollStep::Reduce || st.kind == CollStep::Copy,
                 at << ": kind must be 0 (reduce) or 1 (copy), got " << st.kind);
        TL_CHECK(st.peer >= 0 && st.peer < ranks && st.peer != r,
                 at << ": peer must be another tower in [0, " << ranks << "), got " << st.peer);
        TL_CHECK(st.offset >= 0 && st.length >= 0 && st.offset <= length - st.length,
                 at << ": range [" << st.offset << ", " << st.offset + st.length << ") is outside [0, " << length << ")");
      }
    // Conflicts: what r writes (its own buffer) must not overlap what others read from r in this phase.
    for (int r = 0; r < ranks; ++r)
      for (const CollStep& w : phase[r])
        for (int q = 0; q < ranks; ++q)
          for (const CollStep& rd : phase[q])
            if (rd.peer == r && w.length > 0 && rd.length > 0 && rd.offset < w.offset + w.length &&
                w.offset < rd.offset + rd.length)
              TL_FAIL(where << ": in phase " << p << ", tower " << r << " writes [" << w.offset << ", " << w.offset + w.length
                            << ") while tower " << q << " reads [" << rd.offset << ", " << rd.offset + rd.length
                            << ") of it; put them in different phases");
  }
}

// Symbolic run over the elementary segments: who contributed to each (a mask), and which reduction produced it.
void checkSums(const Schedule& s, int ranks, int64_t length, const std::string& where) {
  std::vector<int64_t> bounds{0, length};
  for (const auto& phase : s.phases)
    for (const auto& steps : phase)
      for (const CollStep& st : steps) {
        bounds.push_back(st.offset);
        bounds.push_back(st.offset + st.length);
      }
  std::sort(bounds.begin(), bounds.end());
  bounds.erase(std::unique(bounds.begin(), bounds.end()), bounds.end());
  const size_t segs = bounds.size() - 1;
  auto segOf = [&](int64_t b) { return static_cast<size_t>(std::lower_bound(bounds.begin(), bounds.end(), b) - bounds.begin()); };
  MaskTable masks(ranks, segs);
  std::vector<int64_t> origin(static_cast<size_t>(ranks) * segs);  // r: rank r's input; > ranks: a reduction
  for (int r = 0; r < ranks; ++r)
    for (size_t g = 0; g < segs; ++g) {
      masks.at(r, g)[r / 64] = uint64_t(1) << (r % 64);
      origin[r * segs + g] = r;
    }
  const size_t W = masks.words;
  for (size_t p = 0; p < s.phases.size(); ++p) {
    MaskTable next = masks;                    // reads see the state before the phase, writes go here
    std::vector<int64_t> nextOrigin = origin;
    for (int r = 0; r < ranks; ++r)
      for (const CollStep& st : s.phases[p][r])
        for (size_t g = segOf(st.offset), end = segOf(st.offset + st.length); g < end; ++g) {
          const uint64_t* src = masks.at(static_cast<int>(st.peer), g);
          uint64_t* dst = next.at(r, g);
          if (st.kind == CollStep::Copy) {
            std::copy(src, src + W, dst);
            nextOrigin[r * segs + g] = origin[st.peer * segs + g];
            continue;
          }
          bool any = false;
          for (size_t w = 0; w < W; ++w) any |= (dst[w] & src[w]) != 0;
          if (any) {
            std::vector<uint64_t> overlap(W);
            for (size_t w = 0; w < W; ++w) overlap[w] = dst[w] & src[w];
            TL_FAIL(where << ": phase " << p << ": tower " << r << " adds tower " << st.peer << "'s [" << bounds[g] << ", "
                          << bounds[g + 1] << ") which already counts tower(s) " << bitsOf(overlap.data(), W)
                          << "; each contribution must be summed once");
          }
          for (size_t w = 0; w < W; ++w) dst[w] |= src[w];
          nextOrigin[r * segs + g] = ranks + static_cast<int64_t>((p * ranks + r) * segs + g);
        }
    masks = std::move(next);
    origin = std::move(nextOrigin);
  }
  if (s.collective == Collective::Broadcast) {
    for (int r = 0; r < ranks; ++r)
      for (size_t g = 0; g < segs; ++g)
        TL_CHECK(origin[r * segs + g] == 0, where << ": at the end tower " << r << "'s [" << bounds[g] << ", " << bounds[g + 1]
                                                  << ") is not tower 0's values copied verbatim; a broadcast copies tower 0's "
                                                     "buffer to every tower");
    return;
  }
  std::vector<uint64_t> full(W, 0);
  for (int r = 0; r < ranks; ++r) full[r / 64] |= uint64_t(1) << (r % 64);
  for (int r = 0; r < ranks; ++r)
    for (size_t g = 0; g < segs; ++g) {
      const uint64_t* m = masks.at(r, g);
      TL_CHECK(std::equal(m, m + W, full.begin()),
               where << ": at the end tower " << r << "'s [" << bounds[g] << ", " << bounds[g + 1] << ") sums towers "
                     << bitsOf(m, W) << " only; every tower needs the sum of all " << ranks);
      TL_CHECK(origin[r * segs + g] == origin[g],
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
  if (length == 0) return;
  checkSums(s, ranks, length, where);
}

}  // namespace tl
