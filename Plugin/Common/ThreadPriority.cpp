#include "Common/ThreadPriority.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>

#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace AzureDicom
{
namespace
{
const int CAP_SYS_NICE_BIT = 23;  // from linux/capability.h

// Whether SetCurrentThreadIdle() last moved this thread to SCHED_IDLE, so that a call into
// Orthanc need not ask the kernel.
thread_local bool currentThreadIdle = false;


// With PRIO_PROCESS, Linux takes a thread ID and changes that thread alone (see setpriority(2),
// section BUGS), which is what this file relies on. sched_setscheduler(2) also takes one.
pid_t GetThreadId()
{
  return static_cast<pid_t>(syscall(SYS_gettid));
}


bool HasSysNiceCapability()
{
  std::ifstream status("/proc/thread-self/status");
  std::string line;
  while (std::getline(status, line))
  {
    if (line.compare(0, 7, "CapEff:") == 0)
    {
      const unsigned long long effective = std::stoull(line.substr(7), nullptr, 16);
      return ((effective >> CAP_SYS_NICE_BIT) & 1u) != 0;
    }
  }
  return false;
}

}  // namespace


void NameCurrentThread(const std::string& name)
{
  // Cut to the 15 characters that Linux keeps, so that a longer name still names the thread.
  pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
}


bool SetCurrentThreadNiceness(int niceness)
{
  return setpriority(PRIO_PROCESS, static_cast<id_t>(GetThreadId()), niceness) == 0;
}


int GetCurrentThreadNiceness()
{
  return getpriority(PRIO_PROCESS, static_cast<id_t>(GetThreadId()));
}


bool SetCurrentThreadIdle(bool idle)
{
  sched_param parameters{};
  parameters.sched_priority = 0;
  if (sched_setscheduler(GetThreadId(), idle ? SCHED_IDLE : SCHED_OTHER, &parameters) != 0)
  {
    return false;
  }
  currentThreadIdle = idle;
  return true;
}


bool IsCurrentThreadIdle()
{
  return currentThreadIdle;
}


OrthancCallPriority::OrthancCallPriority() :
    raised_(IsCurrentThreadIdle() && SetCurrentThreadIdle(false))
{
}


OrthancCallPriority::~OrthancCallPriority()
{
  if (raised_)
  {
    SetCurrentThreadIdle(true);  // sched(7): any thread may move itself to SCHED_IDLE
  }
}


bool CanRestoreCurrentThreadPriority()
{
  // setpriority(2): a thread may go down to nice 20 - RLIMIT_NICE without CAP_SYS_NICE.
  errno = 0;
  const int niceness = GetCurrentThreadNiceness();
  rlimit limit{};
  if (errno == 0 && getrlimit(RLIMIT_NICE, &limit) == 0 &&
      (limit.rlim_cur == RLIM_INFINITY || static_cast<rlim_t>(20 - niceness) <= limit.rlim_cur))
  {
    return true;
  }

  try
  {
    return HasSysNiceCapability();
  }
  catch (const std::exception&)
  {
    return false;
  }
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


void IngestionMonitor::NoteStore(int64_t nowMs)
{
  lastStoreMs_ = nowMs;
  const int64_t second = nowMs / 1000;
  int64_t bucket = second_;
  // The store that moves the bucket to a new second moves the count too. A store that another
  // thread counts meanwhile may land in the second before, which the estimate tolerates.
  if (second > bucket && second_.compare_exchange_strong(bucket, second))
  {
    const unsigned int previous = storesThisSecond_.exchange(0);
    storesLastSecond_ = (second == bucket + 1) ? previous : 0;
  }
  storesThisSecond_++;
}


unsigned int IngestionMonitor::Estimate(int64_t nowMs) const
{
  // The stores of the last 1000 ms: the current bucket, and the part of the one before that is
  // still in the window, assuming stores evenly spread over it.
  const int64_t second = nowMs / 1000;
  const int64_t bucket = second_;
  const double elapsed = static_cast<double>(nowMs % 1000) / 1000.0;
  if (second == bucket)
  {
    return storesThisSecond_ + static_cast<unsigned int>(storesLastSecond_ * (1.0 - elapsed));
  }
  if (second == bucket + 1)
  {
    return static_cast<unsigned int>(storesThisSecond_ * (1.0 - elapsed));
  }
  return 0;
}


unsigned int IngestionMonitor::GetStoresPerSecond(int64_t nowMs)
{
  return Estimate(nowMs);
}


bool IngestionMonitor::IsInBurst(int64_t nowMs)
{
  return Estimate(nowMs) >= BURST_STORES_PER_SECOND && nowMs - lastStoreMs_ <= BURST_END_GAP_MS;
}


bool IngestionMonitor::ShouldHold(int64_t nowMs)
{
  const bool inBurst = IsInBurst(nowMs);
  std::lock_guard<std::mutex> lock(mutex_);
  if (!inBurst)
  {
    burstStartMs_ = 0;
    return false;
  }
  if (burstStartMs_ == 0)
  {
    burstStartMs_ = nowMs;
  }
  return nowMs - burstStartMs_ < MAX_BURST_HOLD_MS;
}


MirrorThreadPriority::MirrorThreadPriority(ILogger& logger, std::atomic<bool>& reported)
    : logger_(logger), reported_(reported), canRestore_(CanRestoreCurrentThreadPriority())
{
}


void MirrorThreadPriority::Adjust(bool ingesting)
{
  if (ingesting == yielding_ || (yielding_ && !canRestore_))
  {
    return;
  }

  if (canRestore_ && SetCurrentThreadIdle(ingesting))
  {
    yielding_ = ingesting;
    return;
  }

  canRestore_ = false;
  if (!ingesting)
  {
    // Not expected after CanRestoreCurrentThreadPriority(): the thread stays under SCHED_IDLE.
    logger_.Warning(std::string("a mirroring thread cannot leave SCHED_IDLE after Orthanc's "
                                "ingestion and runs only on idle CPU time: ") +
                    std::strerror(errno));
    return;
  }

  LowerCurrentThreadPriority(MIRROR_THREAD_NICENESS, logger_);
  yielding_ = true;
  if (!reported_.exchange(true))
  {
    logger_.Info("the mirroring threads keep nice " + std::to_string(MIRROR_THREAD_NICENESS) +
                 " after Orthanc's ingestion: returning to Orthanc's priority needs "
                 "CAP_SYS_NICE");
  }
}
}  // namespace AzureDicom
