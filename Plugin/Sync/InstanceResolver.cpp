#include "Sync/InstanceResolver.h"

#include "Common/Exception.h"
#include "Sync/InstanceFiles.h"
#include "Sync/StoredInstanceCache.h"

namespace AzureDicom
{
std::string GetStringMember(const Json::Value& object, const std::string& name)
{
  if (object.isObject() && object.isMember(name) && object[name].isString())
  {
    return object[name].asString();
  }

  return "";
}


static std::string GetMainDicomTag(const Json::Value& resource, const std::string& tag)
{
  return resource.isObject() ? GetStringMember(resource["MainDicomTags"], tag) : "";
}


bool InstanceResolver::ResolveSeries(SeriesInfo& info, const std::string& orthancSeriesId)
{
  auto cached = series_.find(orthancSeriesId);
  if (cached != series_.end())
  {
    info = cached->second;
    return true;
  }

  Json::Value series;
  if (!orthanc_.GetJson(series, "/series/" + orthancSeriesId))
  {
    return false;
  }

  Json::Value study;
  const std::string studyId = GetStringMember(series, "ParentStudy");
  if (studyId.empty() || !orthanc_.GetJson(study, "/studies/" + studyId))
  {
    return false;
  }

  info.seriesInstanceUid = GetMainDicomTag(series, "SeriesInstanceUID");
  info.orthancStudyId = studyId;
  info.studyInstanceUid = GetMainDicomTag(study, "StudyInstanceUID");

  if (series_.size() >= MAX_CACHED_SERIES)
  {
    series_.erase(seriesOrder_.front());
    seriesOrder_.pop_front();
  }
  series_[orthancSeriesId] = info;
  seriesOrder_.push_back(orthancSeriesId);
  return true;
}


bool InstanceResolver::ResolveFromFile(NewInstance& instance, const std::string& orthancId,
                                       bool& instanceExists)
{
  PlainAttachment attachment;
  if (!LookUpPlainAttachment(attachment, orthanc_, orthancId, instanceExists))
  {
    return false;
  }

  for (size_t bytes : {FIRST_READ_BYTES, SECOND_READ_BYTES})
  {
    const std::string start = ReadAttachmentStart(storageDirectory_, attachment, bytes);
    NewInstance identified;
    if (!start.empty() &&
        IdentifyInstanceFile(identified, orthancId, start.data(), start.size()))
    {
      identified.size = attachment.size;
      identified.fileUuid = attachment.uuid;
      identified.fileMd5 = attachment.md5;
      instance = std::move(identified);
      return true;
    }
    if (start.size() < bytes)
    {
      break;  // the whole file was read, or none of it
    }
  }
  return false;
}


bool InstanceResolver::Resolve(NewInstance& instance, const std::string& orthancId)
{
  if (ReadsFiles())
  {
    bool instanceExists = true;
    try
    {
      if (ResolveFromFile(instance, orthancId, instanceExists))
      {
        fileMisses_ = 0;
        return true;
      }
    }
    catch (const Exception&)
    {
      // The file is only a shortcut: the instance's own route below reports a real failure.
    }
    if (instanceExists)
    {
      fileMisses_++;  // a deleted instance is no sign of a storage problem, so it is not counted
    }
  }

  Json::Value answer;
  if (!orthanc_.GetJson(answer, "/instances/" + orthancId))
  {
    return false;
  }
  return Resolve(instance, orthancId, answer);
}


bool InstanceResolver::Resolve(NewInstance& instance, const std::string& orthancId,
                               const Json::Value& answer)
{
  instance.orthancId = orthancId;
  instance.sopInstanceUid = GetMainDicomTag(answer, "SOPInstanceUID");
  if (instance.sopInstanceUid.empty())
  {
    throw Exception(ErrorCode::ProtocolError,
                    "Orthanc returned no SOPInstanceUID for instance " + orthancId);
  }

  if (answer["FileSize"].isUInt64())
  {
    instance.size = answer["FileSize"].asUInt64();
  }
  instance.fileUuid = GetStringMember(answer, "FileUuid");

  SeriesInfo series;
  if (!ResolveSeries(series, GetStringMember(answer, "ParentSeries")))
  {
    return false;
  }

  instance.seriesInstanceUid = series.seriesInstanceUid;
  instance.studyInstanceUid = series.studyInstanceUid;
  instance.orthancStudyId = series.orthancStudyId;
  return true;
}
}  // namespace AzureDicom
