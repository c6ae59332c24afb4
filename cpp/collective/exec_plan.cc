// Fusing reduce-then-copy pairs of a schedule (Note [Fused steps] in exec_plan.h).
#include "exec_plan.h"

namespace tl {

namespace {

bool overlaps(const CollStep& a, int64_t off, int64_t len) {
  return a.length > 0 && len > 0 && a.offset < off + len && off < a.offset + a.length;
}

// Whether, in `phase`, another tower touches tower q's [off, off+len) while tower r's step `self` may push into it:
// q's own steps write its buffer; every non-remote step with peer q reads it; pushes into q write it. Tower r's own
// steps up to `self` run before the push on r's thread (r's reduce from q earlier in the phase has read q's chunk
// by then: the naive schedule's tower 0 sums every tower, then pushes the sum into all of them, in one phase), and
// its steps after `self` do not touch [off, off+len) at all (the caller checked that `self` is the chunk's last).
bool untouched(const std::vector<std::vector<ExecStep>>& phase, int r, size_t self, int q, int64_t off, int64_t len) {
  for (size_t x = 0; x < phase.size(); ++x)
    for (size_t k = 0; k < phase[x].size(); ++k) {
      const ExecStep& e = phase[x][k];
      if (static_cast<int>(x) == r && k <= self) continue;
      if (static_cast<int>(x) == q && overlaps(e.step, off, len)) return false;
      if (e.step.kind != CollStep::Remote && e.step.peer == q && overlaps(e.step, off, len)) return false;
      for (int t : e.pushTo)
        if (t == q && overlaps(e.step, off, len)) return false;
    }
  return true;
}

}  // namespace

ExecPlan planExecution(const Schedule& s, int ranks, const std::function<bool(int r, int peer, int q)>& canPush) {
  ExecPlan plan;
  std::vector<std::vector<std::vector<ExecStep>>> phases;
  std::vector<std::vector<std::vector<bool>>> dropped;
  for (const auto& phase : s.phases) {
    phases.emplace_back(ranks);
    dropped.emplace_back(ranks);
    for (int r = 0; r < ranks; ++r) {
      for (const CollStep& st : phase[r]) {
        phases.back()[r].push_back(ExecStep{st, {}, {}});
        plan.remote |= st.kind == CollStep::Remote;
      }
      dropped.back()[r].assign(phase[r].size(), false);
    }
  }
  for (size_t p = 0; p + 1 < phases.size(); ++p)
    for (int r = 0; r < ranks; ++r)
      for (size_t k = 0; k < phases[p][r].size(); ++k) {
        ExecStep& e = phases[p][r][k];
        const CollStep& st = e.step;
        if (st.kind != CollStep::Reduce || st.length == 0) continue;
        bool last = true;  // the chunk's final value for this phase
        for (size_t k2 = k + 1; k2 < phases[p][r].size(); ++k2) last &= !overlaps(phases[p][r][k2].step, st.offset, st.length);
        if (!last) continue;
        for (int q = 0; q < ranks; ++q) {
          if (q == r) continue;
          for (size_t c = 0; c < phases[p + 1][q].size(); ++c) {
            const CollStep& cp = phases[p + 1][q][c].step;
            if (dropped[p + 1][q][c] || cp.kind != CollStep::Copy || cp.peer != r || cp.offset != st.offset || cp.length != st.length)
              continue;
            if (!canPush(r, static_cast<int>(st.peer), q) || !untouched(phases[p], r, k, q, st.offset, st.length)) continue;
            e.pushTo.push_back(q);
            dropped[p + 1][q][c] = true;
            ++plan.fused;
            break;
          }
        }
      }
  for (size_t p = 0; p < phases.size(); ++p) {
    std::vector<std::vector<ExecStep>> kept(ranks);
    bool any = false;
    for (int r = 0; r < ranks; ++r)
      for (size_t k = 0; k < phases[p][r].size(); ++k)
        if (!dropped[p][r][k]) {
          kept[r].push_back(phases[p][r][k]);
          any = true;
        }
    if (any) plan.phases.push_back(std::move(kept));
  }
  return plan;
}

}  // namespace tl
