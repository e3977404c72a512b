#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace AzureDicom
{
// Milliseconds since the Unix epoch.
inline int64_t NowMs()
{
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

// Formats milliseconds since the epoch as ISO 8601 UTC ("2026-12-03T10:15:30.250Z"); "" for 0.
std::string FormatIsoTime(int64_t ms);
}  // namespace AzureDicom
