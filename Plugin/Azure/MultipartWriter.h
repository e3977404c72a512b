#pragma once

#include "Common/Buffer.h"

#include <memory>
#include <string>
#include <vector>

namespace AzureDicom
{
// Builds a multipart/related body (RFC 2387) of DICOM instances for STOW-RS. Each part has the
// Content-Type exactly "application/dicom", because the Azure DICOM service responds with 415 to a
// part with parameters. The boundary is 128 random bits in hex; AddPart() throws
// Exception(InternalError) in the unlikely case that a part contains it. The body refers to the
// instances' buffers without copying them, so the writer must outlive the request.
class MultipartWriter
{
public:
  // Draws the boundary from OpenSSL's random generator. Throws Exception(InternalError) if the
  // generator fails.
  MultipartWriter();
  ~MultipartWriter();

  // Appends one instance and keeps its buffer. Throws Exception(InternalError), leaving the body
  // as it was, if the instance contains the boundary or if the body is closed.
  void AddPart(std::unique_ptr<IBuffer> dicom);

  // Appends one instance whose bytes are read only when the upload reaches them, and keeps the
  // deferred buffer. The boundary is checked when the bytes are loaded: a part that contains it
  // fails to load, which aborts the upload, and GetLoadError() returns why.
  void AddDeferredPart(std::unique_ptr<IDeferredBuffer> dicom);

  // Returns why the last load of a deferred part failed in this writer's checks, or "".
  std::string GetLoadError() const;

  // Appends a copy of one instance.
  void AddPart(const std::string& dicom);
  void AddPart(const char* data, size_t size);

  // The value of the request's Content-Type header:
  // multipart/related; type="application/dicom"; boundary=...  (no "start" parameter, to which the
  // service responds with 400).
  std::string GetContentType() const;

  // Closes the body, once; later calls do nothing. Throws Exception(InternalError) when no part
  // was added, because RFC 2046 requires at least one part and a STOW-RS request without an
  // instance has nothing to store.
  void Close();

  // The body in pieces, complete once closed.
  const RequestBody& GetBody() const
  {
    return body_;
  }

  // Closes the body and returns a copy of it in one string, for tests and small bodies.
  std::string Finish();

  size_t GetPartCount() const
  {
    return parts_;
  }

private:
  class BoundaryCheckedPart;

  void AddText(std::string text);
  void AddDelimiter();

  std::string boundary_;
  std::vector<std::unique_ptr<IBuffer>> buffers_;  // every byte that body_ refers to
  std::vector<std::unique_ptr<BoundaryCheckedPart>> deferred_;  // and the parts loaded later
  RequestBody body_;
  size_t parts_ = 0;
  bool closed_ = false;
};
}  // namespace AzureDicom
