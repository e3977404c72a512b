#include "Common/Clock.h"

#include "Common/Exception.h"

#include <ctime>
#include <iomanip>
#include <sstream>

namespace AzureDicom
{
namespace
{
constexpr int64_t kMsPerSecond = 1000;

// Holds "YYYY-MM-DDTHH:MM:SS" for any year that struct tm can hold.
constexpr size_t kIsoTimeBufferSize = 64;
}  // namespace


std::string FormatIsoTime(int64_t ms)
{
  if (ms == 0)
  {
    return "";
  }

  // Floor division, so that an instant before the epoch keeps a millisecond part from 0 to 999.
  int64_t seconds = ms / kMsPerSecond;
  int64_t milliseconds = ms % kMsPerSecond;
  if (milliseconds < 0)
  {
    seconds -= 1;
    milliseconds += kMsPerSecond;
  }

  const std::time_t time = static_cast<std::time_t>(seconds);
  std::tm calendar{};
  if (gmtime_r(&time, &calendar) == nullptr)
  {
    throw Exception(ErrorCode::InternalError,
                    "FormatIsoTime: " + std::to_string(ms) +
                        " ms since the epoch is outside the calendar; expected a year that fits "
                        "an int");
  }

  char dateAndTime[kIsoTimeBufferSize];
  std::strftime(dateAndTime, sizeof(dateAndTime), "%Y-%m-%dT%H:%M:%S", &calendar);

  std::ostringstream result;
  result << dateAndTime << '.' << std::setw(3) << std::setfill('0') << milliseconds << 'Z';
  return result.str();
}
}  // namespace AzureDicom
