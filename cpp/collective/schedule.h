// Collective schedules as data (Note [Schedules] in src/scheduler/schedule.ts) and their one validator.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace tl {

// One step of one rank: kind Reduce "my [offset, offset+length) += peer's", Copy "mine = peer's" (verbatim), Remote
// "my [offset, offset+length) = its sum over the processes of the group, on slot `peer`'s context" (Note [Remote
// steps] in remote.h). Fields are 64-bit so a schedule given from JS is held exactly as given until the validator
// has judged it.
struct CollStep {
  static constexpr int64_t Reduce = 0, Copy = 1, Remote = 2;
  int64_t kind = Reduce;
  int64_t peer = 0;    // the rank whose buffer is read; for Remote, the slot
  int64_t offset = 0;  // elements
  int64_t length = 0;  // elements
};

// What a schedule computes: every rank ends with the sum of all ranks' values (the gradient all-reduce), or with
// rank 0's values (the start-up weight broadcast); a reduce-scatter leaves the sum of shard r at rank r (the
// sharded update's gradient), an all-gather leaves shard q of every rank equal to rank q's (its weights); a barrier
// has no phases and changes nothing: its entry barrier is all it does (towers that share memory: Note [Shared
// weights] in src/model/shard-plan.ts).
enum class Collective { AllReduce, Broadcast, ReduceScatter, AllGather, Barrier };

// phases[p][rank] is what `rank` does in phase p; all ranks finish phase p before any starts p + 1.
struct Schedule {
  std::string name;
  Collective collective = Collective::AllReduce;
  std::vector<std::vector<std::vector<CollStep>>> phases;
  // Reduce-scatter and all-gather only: shards[r] = {offset, length} owned by rank r; they tile [0, length) in rank
  // order.
  std::vector<std::pair<int64_t, int64_t>> shards;
};

// Note [One schedule validator]: every schedule passes this before a communicator may run it (createComm,
// setCommSchedule) and src/scheduler/schedule.ts's validateSchedule delegates to it (native().validateSchedule),
// so there is one set of rules: the shape (a step list per rank in every phase), kinds, peers and ranges; no
// rank writes in a phase what another reads from it in that phase; and, run symbolically over the elementary
// segments the steps cut the buffer into, every rank ends with every rank's contribution summed exactly once, each
// element's sum produced by one single reduction and copied verbatim everywhere else (bit-identical replicas); for
// a broadcast, every rank ends with rank 0's values, copied verbatim; for a reduce-scatter, rank r ends with every
// rank's contribution to its shard summed exactly once; for an all-gather, every rank ends with shard q holding rank
// q's values, copied verbatim (nothing summed). A schedule with remote steps must end with
// every element summed over every tower of every process (each process's share crossing processes once); without
// them, over the local towers.
// Throws tl::Error with "schedule '<name>' for <ranks> towers and <length> elements: <reason>".
void validateSchedule(const Schedule& s, int ranks, int64_t length);

// The prefix of every validation message.
std::string scheduleWhere(const std::string& name, int ranks, int64_t length);

}  // namespace tl
