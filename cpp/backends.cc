// Optional backends: the CUDA library, where built, provides registerCudaBackend; elsewhere this is a no-op.
#include "registry.h"

namespace tl {

#ifdef TL_HAVE_CUDA_BACKEND
void registerCudaBackend();
void registerOptionalBackends() { registerCudaBackend(); }
#else
void registerOptionalBackends() {}
#endif

}  // namespace tl
