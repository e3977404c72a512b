#include "Sync/ServiceDeletion.h"

#include "Azure/StowResponse.h"
#include "Common/Exception.h"

namespace AzureDicom
{
namespace
{
const size_t MAX_MESSAGE_BYTES = 300;
const char* const STUDIES_SUFFIX = "/studies";


DeletionResult Classify(const HttpResponse& response, const std::string& url)
{
  DeletionResult result;
  result.httpStatus = response.status;
  result.message = "DELETE " + url + ": HTTP " + std::to_string(response.status);
  const std::string excerpt = MakePrintableExcerpt(response.body, MAX_MESSAGE_BYTES);
  if (!excerpt.empty())
  {
    result.message += ": " + excerpt;
  }

  const long status = response.status;
  if (status == 200 || status == 202 || status == 204)
  {
    result.status = DeletionStatus::Deleted;
  }
  else if (status == 404)
  {
    result.status = DeletionStatus::NotFound;
  }
  else if (status == 401 || status == 403 || status == 408 || status == 429 || status >= 500)
  {
    result.status = DeletionStatus::Transient;
  }
  else
  {
    result.status = DeletionStatus::Rejected;
  }
  return result;
}
}  // namespace


std::string GetServiceInstanceUrl(const OutboxItem& item)
{
  if (!item.sentTo.IsEmpty())
  {
    return item.sentTo.GetInstanceUrl(item.instance.studyInstanceUid,
                                      item.instance.seriesInstanceUid,
                                      item.instance.sopInstanceUid);
  }

  std::string base = item.destination;
  const size_t suffixLength = std::char_traits<char>::length(STUDIES_SUFFIX);
  if (base.size() >= suffixLength &&
      base.compare(base.size() - suffixLength, suffixLength, STUDIES_SUFFIX) == 0)
  {
    base.resize(base.size() - suffixLength);
  }
  return Destination{base, "", ""}.GetInstanceUrl(item.instance.studyInstanceUid,
                                                  item.instance.seriesInstanceUid,
                                                  item.instance.sopInstanceUid);
}


DeletionResult DeleteAtService(IStowSender& sender, const OutboxItem& item)
{
  const std::string url = GetServiceInstanceUrl(item);
  try
  {
    DeletionResult result = Classify(sender.Delete(url), url);
    if (result.httpStatus == 401)
    {
      sender.InvalidateToken();
      result = Classify(sender.Delete(url), url);
    }
    return result;
  }
  catch (const Exception& e)
  {
    DeletionResult result;
    result.status = DeletionStatus::Transient;
    result.message = std::string("DELETE ") + url + " failed: " + e.what();
    return result;
  }
}
}  // namespace AzureDicom
