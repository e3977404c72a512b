#include "Common/ThreadPriority.h"

#include <cerrno>
#include <cstring>
#include <string>

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace AzureDicom
{
namespace
{
// With PRIO_PROCESS, Linux takes a thread ID and changes that thread alone (see setpriority(2),
// section BUGS), which is what this file relies on.
id_t GetThreadId()
{
  return static_cast<id_t>(syscall(SYS_gettid));
}
}  // namespace


bool SetCurrentThreadNiceness(int niceness)
{
  return setpriority(PRIO_PROCESS, GetThreadId(), niceness) == 0;
}


int GetCurrentThreadNiceness()
{
  return getpriority(PRIO_PROCESS, GetThreadId());
}


void LowerCurrentThreadPriority(int niceness, ILogger& logger)
{
  if (niceness <= 0)
  {
    return;
  }

  errno = 0;
  const int current = GetCurrentThreadNiceness();
  if (errno != 0 || current >= niceness)
  {
    return;
  }

  if (!SetCurrentThreadNiceness(niceness))
  {
    logger.Warning("cannot lower the priority of a mirroring thread to nice " +
                   std::to_string(niceness) + ": " + std::strerror(errno));
  }
}
}  // namespace AzureDicom
