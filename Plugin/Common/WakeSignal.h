#pragma once

namespace AzureDicom
{
// A signal that wakes one waiting thread, raised without taking a lock (a Linux eventfd). Orthanc
// runs its store callbacks under one global mutex, so the callback must not wait for a lock that
// a thread under SCHED_IDLE may hold while it waits for CPU time. A signal raised while no thread
// waits is kept until the next Wait().
class WakeSignal
{
public:
  WakeSignal();
  ~WakeSignal();

  WakeSignal(const WakeSignal&) = delete;
  WakeSignal& operator=(const WakeSignal&) = delete;

  // Thread-safe, and never blocks: the eventfd is non-blocking.
  void Raise();

  // Waits up to timeoutMs for the signal and returns whether it was raised, clearing it.
  bool Wait(unsigned int timeoutMs);

private:
  int descriptor_;
};
}  // namespace AzureDicom
