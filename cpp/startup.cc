// Start-up hooks (Note [Backend start-up hooks] in startup.h).
#include "startup.h"

#include <vector>

namespace tl {

static std::vector<StartupHook>& hooks() {
  static std::vector<StartupHook>* h = new std::vector<StartupHook>();  // safe from any static initialiser
  return *h;
}

bool addStartupHook(StartupHook hook) {
  hooks().push_back(hook);
  return true;
}

void runStartupHooks() {
  for (StartupHook h : hooks()) h();
}

}  // namespace tl
