#pragma once

#include "Sync/OrthancGateway.h"
#include "Sync/OutboxItem.h"

#include <list>
#include <string>
#include <unordered_map>

namespace AzureDicom
{
// Reads what the outbox records of an instance (UIDs, parent study, file size) from Orthanc.
// Keeps the last series it saw, because instances come series by series and a series lookup
// costs two more REST calls. Not thread-safe: each user owns one.
class InstanceResolver
{
public:
  explicit InstanceResolver(IOrthancGateway& orthanc) : orthanc_(orthanc)
  {
  }

  // Returns false when the instance no longer exists in Orthanc.
  bool Resolve(NewInstance& instance, const std::string& orthancId);

  // The same from the instance's JSON that Orthanc returned (GET /instances/{id}, or one
  // element of GET /instances?expand), without a REST call of its own but for a new series.
  bool Resolve(NewInstance& instance, const std::string& orthancId, const Json::Value& answer);

private:
  struct SeriesInfo
  {
    std::string seriesInstanceUid;
    std::string studyInstanceUid;
    std::string orthancStudyId;
  };

  bool ResolveSeries(SeriesInfo& info, const std::string& orthancSeriesId);

  static const size_t MAX_CACHED_SERIES = 64;

  IOrthancGateway& orthanc_;
  std::unordered_map<std::string, SeriesInfo> series_;
  std::list<std::string> seriesOrder_;  // oldest first, to evict
};


// Returns the string member of a JSON object, or "" when it is missing or not a string.
std::string GetStringMember(const Json::Value& object, const std::string& name);
}  // namespace AzureDicom
