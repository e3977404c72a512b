#include "Common/ThreadPriority.h"

#include <cerrno>
#include <cstring>
#include <string>

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace AzureDicom
{
void LowerCurrentThreadPriority(int niceness, ILogger& logger)
{
  if (niceness <= 0)
  {
    return;
  }

  // With PRIO_PROCESS, Linux takes a thread ID and changes that thread alone (see setpriority(2),
  // section BUGS), which is what this function relies on.
  const auto threadId = static_cast<id_t>(syscall(SYS_gettid));
  errno = 0;
  const int current = getpriority(PRIO_PROCESS, threadId);
  if (errno != 0 || current >= niceness)
  {
    return;
  }

  if (setpriority(PRIO_PROCESS, threadId, niceness) != 0)
  {
    logger.Warning("cannot lower the priority of a mirroring thread to nice " +
                   std::to_string(niceness) + ": " + std::strerror(errno));
  }
}
}  // namespace AzureDicom
