#include "Common/WakeSignal.h"

#include "Common/Exception.h"

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

namespace AzureDicom
{
WakeSignal::WakeSignal() : descriptor_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK))
{
  if (descriptor_ < 0)
  {
    throw Exception(ErrorCode::InternalError,
                    std::string("cannot create an eventfd: ") + std::strerror(errno));
  }
}


WakeSignal::~WakeSignal()
{
  close(descriptor_);
}


void WakeSignal::Raise()
{
  // Fails only when the counter would overflow, and then the signal is raised already.
  const uint64_t increment = 1;
  const ssize_t written = write(descriptor_, &increment, sizeof(increment));
  (void) written;
}


bool WakeSignal::Wait(unsigned int timeoutMs)
{
  struct pollfd entry = {};
  entry.fd = descriptor_;
  entry.events = POLLIN;
  const int ready = poll(&entry, 1, static_cast<int>(timeoutMs));
  if (ready <= 0)
  {
    return false;  // timed out, or interrupted by a signal: the caller waits again
  }

  uint64_t count = 0;
  return read(descriptor_, &count, sizeof(count)) == static_cast<ssize_t>(sizeof(count));
}
}  // namespace AzureDicom
