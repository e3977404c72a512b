#pragma once

#include "Common/Logger.h"

namespace AzureDicom
{
// The nice value (0 to 19) of the threads that mirror instances. Linux's scheduler then gives
// Orthanc's own threads, which store what modalities send, about ten times their CPU share when
// both compete for the CPU; an idle CPU still runs the mirror at full speed.
constexpr int MIRROR_THREAD_NICENESS = 10;

// Lowers the scheduling priority of the calling thread to the nice value niceness, which Linux
// applies per thread. Logs a warning and goes on at the current priority when the system refuses.
void LowerCurrentThreadPriority(int niceness, ILogger& logger);

// Sets the nice value of the calling thread. Returns false, with errno set, when the system
// refuses: a lower value than the current one needs CAP_SYS_NICE or a high RLIMIT_NICE.
bool SetCurrentThreadNiceness(int niceness);

// Returns the nice value of the calling thread.
int GetCurrentThreadNiceness();
}  // namespace AzureDicom
