// Start-up hooks: optional backends (CUDA) register themselves, so core code never names them (no #ifdef).
#pragma once

namespace tl {

// Note [Backend start-up hooks]: a backend that is built only on some machines adds its registration function here
// from a static initialiser in its own sources (`static const bool r = addStartupHook(registerCudaBackend);`); the
// addon runs every hook once, when the first Node environment loads it, after the CPU backend. A build without
// that backend's sources simply has no such hook.
using StartupHook = void (*)();

// Returns true (for use in a static initialiser).
bool addStartupHook(StartupHook hook);
// Runs the hooks added so far, in the order they were added.
void runStartupHooks();

}  // namespace tl
